"""The declared format of the three raw H&M files: column names, order, and which are required."""

from __future__ import annotations

from dataclasses import dataclass

TRANSACTIONS_FILE = "transactions_train.csv"
CUSTOMERS_FILE = "customers.csv"
ARTICLES_FILE = "articles.csv"
RAW_FILES = (CUSTOMERS_FILE, ARTICLES_FILE, TRANSACTIONS_FILE)

TRANSACTION_COLUMNS = ("t_dat", "customer_id", "article_id", "price", "sales_channel_id")

CUSTOMER_COLUMNS = (
    "customer_id",
    "FN",
    "Active",
    "club_member_status",
    "fashion_news_frequency",
    "age",
    "postal_code",
)

ARTICLE_COLUMNS = (
    "article_id",
    "product_code",
    "prod_name",
    "product_type_no",
    "product_type_name",
    "product_group_name",
    "graphical_appearance_no",
    "graphical_appearance_name",
    "colour_group_code",
    "colour_group_name",
    "perceived_colour_value_id",
    "perceived_colour_value_name",
    "perceived_colour_master_id",
    "perceived_colour_master_name",
    "department_no",
    "department_name",
    "index_code",
    "index_name",
    "index_group_no",
    "index_group_name",
    "section_no",
    "section_name",
    "garment_group_no",
    "garment_group_name",
    "detail_desc",
)

# Integer code columns of articles.csv, each paired with its human-readable name column.
ARTICLE_CODE_COLUMNS = (
    "product_type_no",
    "graphical_appearance_no",
    "colour_group_code",
    "perceived_colour_value_id",
    "perceived_colour_master_id",
    "department_no",
    "index_group_no",
    "section_no",
    "garment_group_no",
)

CLUB_STATUSES = ("ACTIVE", "PRE-CREATE", "LEFT CLUB")
NEWS_FREQUENCIES = ("NONE", "Regularly", "Monthly")
SALES_CHANNELS = (1, 2)  # 1 = store, 2 = online

# The one rule for a customer id, in the ETL (raw.clean) and the API (serving.schemas), both matched by Rust's regex
# engine (Polars, pydantic-core): 1-64 characters, none a control character (U+0000-001F, U+007F-009F), the first
# and the last not a space (the ETL trims spaces at the ends first, and counts them). H&M's ids are 64 hex digits.
CUSTOMER_ID_MAX_CHARS = 64
_CONTROL = r"\x00-\x1f\x7f-\x9f"
CUSTOMER_ID_PATTERN = (rf"^[^{_CONTROL}\x20](?:[^{_CONTROL}]{{0,{CUSTOMER_ID_MAX_CHARS - 2}}}"
                       rf"[^{_CONTROL}\x20])?$")
CUSTOMER_ID_RULE = (f"1-{CUSTOMER_ID_MAX_CHARS} characters, no control characters, no space at either end")


@dataclass(frozen=True)
class FileSpec:
    """What a raw file must contain: its columns in order, and the ones a build cannot do without."""

    name: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    keys: tuple[str, ...]


TRANSACTIONS = FileSpec(
    TRANSACTIONS_FILE,
    TRANSACTION_COLUMNS,
    required=TRANSACTION_COLUMNS,
    keys=("t_dat", "customer_id", "article_id"),
)
CUSTOMERS = FileSpec(CUSTOMERS_FILE, CUSTOMER_COLUMNS, required=("customer_id",), keys=("customer_id",))
ARTICLES = FileSpec(
    ARTICLES_FILE,
    ARTICLE_COLUMNS,
    required=("article_id", "product_code"),
    keys=("article_id",),
)
SPECS = {spec.name: spec for spec in (CUSTOMERS, ARTICLES, TRANSACTIONS)}


def format_article_id(article_id: int) -> str:
    """The CSV spelling of an article id: 10 digits with the leading zero, e.g. 663713001 -> '0663713001'."""
    return f"{int(article_id):010d}"
