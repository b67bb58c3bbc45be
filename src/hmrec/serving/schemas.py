"""Request and response bodies of the API (pydantic), which are also its OpenAPI documentation."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from hmrec.raw import schema

CUSTOMER_ID_PATTERN = schema.CUSTOMER_ID_PATTERN  # the ETL's rule too
ARTICLE_ID_PATTERN = r"^[0-9]{1,10}$"
EVENT_ID_PATTERN = r"^[0-9A-Za-z_.:-]{1,128}$"

REQUEST_ID_PATTERN = r"^[0-9A-Za-z_-]{1,64}$"
RequestId = Annotated[str, Field(pattern=REQUEST_ID_PATTERN, examples=["6f1c2a9e0b8d4e7f9a3c5b1d2e4f6a8c"],
                                 description="The `request_id` of the answer the customer saw")]
SURFACE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
SURFACE = "recommendations"  # the impressions' surface of a POST /recommendations that names none
CustomerId = Annotated[str, Field(pattern=CUSTOMER_ID_PATTERN, description=schema.CUSTOMER_ID_RULE,
                                  examples=["00000dbacae5abe5e23885899a1fa44253a17956c6d1c3d25f88aa139fdfc657"])]


def integral(value: object) -> object:
    """72.0 as 72: JSON Schema's integer admits a number with a zero fraction; anything else is left to the type."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def parse_article_id(value: str | int) -> int:
    """'0663713001', '663713001', 663713001 (and 663713001.0) are the same article."""
    value = integral(value)
    text = str(value)
    well_formed = text.isascii() and text.isdigit() and 1 <= len(text) <= 10
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not well_formed:
        raise ValueError("must be an article id of 1-10 digits, e.g. '0663713001'")
    return int(text)


# Accepts '0663713001', '663713001' or 663713001 and holds the int; anything else is one clear error.
ArticleId = Annotated[int, BeforeValidator(parse_article_id), WithJsonSchema(
    {"anyOf": [{"type": "string", "pattern": ARTICLE_ID_PATTERN},
               {"type": "integer", "minimum": 0, "maximum": 9_999_999_999}],
     "description": "Article id, with or without the leading zero", "examples": ["0663713001"]})]


class RecommendationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: "12" and true are not a k
    customer_id: CustomerId
    k: Annotated[int, BeforeValidator(integral)] = Field(12, ge=1, le=100, description="How many articles to return.")
    include_purchased: bool = Field(False, description="Also offer articles the customer bought through live "
                                    "events in the last HMREC_PURCHASED_DAYS days (left out by default).")
    surface: str = Field(SURFACE, pattern=SURFACE_PATTERN, description="Where the answer is shown (a page, a rail), "
                         "recorded with its impression.")


# What an item's `score` is, so that nobody compares a ranker's score (~0.3) with a sales count (~350):
# model: the personalised model's score (higher is better, comparable within one answer only); recent_sales: the
# article's time-decayed sales (cold start, bestsellers, same-type neighbours); similarity: the inner product of
# two articles' style vectors; times_bought: how often this customer bought it. Null with a null score.
ScoreKind = Literal["model", "recent_sales", "similarity", "times_bought"]
SCORE_DECIMALS = 6


def shown_score(score: float | None) -> float | None:
    """Every score the API answers, rounded the same way; NaN (no score: a filled-in article) as null."""
    return None if score is None or score != score else round(float(score), SCORE_DECIMALS)


class ArticleCard(BaseModel):
    article_id: str = Field(description="10 digits with the leading zero")
    name: str | None
    product_type: str | None
    product_group: str | None
    colour: str | None
    index_group: str | None
    price: float | None = Field(description="Median price paid in the data (scaled like the data); null if never sold")
    image_url: str


class RecommendedArticle(ArticleCard):
    score: float | None
    score_kind: ScoreKind | None = Field(description="What score is: model, recent_sales (cold start) or null")
    sources: list[str] = Field(description="The candidate sources that proposed this article")
    reason: str


class RecommendationResponse(BaseModel):
    customer_id: str
    known_customer: bool
    strategy: Literal["personalized", "cold_start"]
    path: Literal["precomputed", "online"] = Field(
        description="Which path computed the answer: looked up in the version's precomputed answers (active "
                    "customers without live events) or computed online")
    model_version: int | None
    variant: str = Field("champion", description="The registry alias that answered: the customer's variant of the "
                         "live experiment (`hmrec experiment start`), `champion` without one")
    as_of: date = Field(description="The service's clock: day after the later of data end and last purchase")
    items: list[RecommendedArticle]
    cached: bool
    degraded: bool = Field(False, description="The event store could not be read: the answer uses the bundle's "
                           "history and the live events this worker already held (also the X-Hmrec-Degraded header)")
    took_ms: float
    request_id: str = Field(description="New for every answer, cached ones included: the id of this impression. "
                            "Send it with a purchase of a shown article (`POST /events/purchases`).")


class Profile(BaseModel):
    age: int | None
    age_bucket: str | None
    club_member_status: str | None
    fashion_news_frequency: str | None
    FN: int | None
    Active: int | None


class Summary(BaseModel):
    purchase_count: int = Field(description="Every purchase, live events included (recent_purchases shows the last)")
    last_purchase: date | None
    average_price: float | None
    favourite_index_group: str | None


class Purchase(ArticleCard):
    price: float | None = Field(description="The price this customer paid in this purchase (scaled like the data), "
                                "not the catalogue's median price of the other cards")
    t_dat: date
    sales_channel_id: int


class ScoredArticle(ArticleCard):
    score: float | None
    score_kind: ScoreKind | None = Field(description="What score is: recent_sales, similarity or times_bought")


class CustomerResponse(BaseModel):
    customer_id: str
    known: bool = Field(description="False for an id the data has never seen (a new customer)")
    profile: Profile
    summary: Summary
    recent_purchases: list[Purchase]
    degraded: bool = Field(False, description="The event store could not be read: the answer uses the bundle's "
                           "history and the live events this worker already held (also the X-Hmrec-Degraded header)")


class BuyAgainResponse(BaseModel):
    customer_id: str
    model_version: int | None
    variant: str = Field("champion", description="The registry alias that answered: the customer's variant of the "
                         "live experiment (`hmrec experiment start`), `champion` without one")
    items: list[ScoredArticle] = Field(description="Most bought first (score: times bought), then most recent")
    as_of: date = Field(description="The service's clock for this customer (as in POST /recommendations)")
    request_id: str = Field(description="New for every answer, cached ones included: the id of this impression. "
                            "Send it with a purchase of a shown article (`POST /events/purchases`).")
    degraded: bool = Field(False, description="The event store could not be read: the answer uses the bundle's "
                           "history and the live events this worker already held (also the X-Hmrec-Degraded header)")


class ArticleDetail(ArticleCard):
    product_code: int
    perceived_colour: str | None
    department: str | None
    description: str | None


class SimilarResponse(BaseModel):
    article: ArticleCard
    method: str = Field(description="The source that answered likeness (its name), or same_product_type")
    items: list[ScoredArticle]
    request_id: str = Field(description="New for every answer: its impression's id, recorded when the request "
                            "named `customer_id`. Send it with a purchase of a shown article.")


class PopularResponse(BaseModel):
    age_bucket: str | None = Field(description="The age bucket whose bestsellers these are; null: everyone's")
    model_version: int | None
    items: list[ScoredArticle]


MAX_PRICE = 1e6  # the largest price an event may carry; stored events are checked against it again (serving/live.py)


class PurchaseEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: "0.03" is not a price, true not a channel
    customer_id: CustomerId
    article_id: ArticleId
    price: float | None = Field(None, ge=0, le=MAX_PRICE, allow_inf_nan=False)
    sales_channel_id: Literal[1, 2] | None = Field(
        None, validation_alias=AliasChoices("sales_channel_id", "channel"),
        description="1 = store, 2 = online (default); the data's column name, as answered and exported. `channel` "
        "is accepted as an alias (the field's earlier name).")
    # not strict: JSON has no date type, so the ISO string must be parsed
    t_dat: date | None = Field(None, strict=False, description="Day of purchase, from the data's first day to the "
                               "service's date + 1 day; default: the service's date, the day after the data's last day")
    request_id: RequestId | None = Field(None, description="The `request_id` of the answer the article was bought "
                                         "from: the purchase is credited to that impression (attribution).")
    event_id: str | None = Field(None, pattern=EVENT_ID_PATTERN, validation_alias=AliasChoices(
        "event_id", "client_event_id"), description="The client's own id for this event (`client_event_id` is "
        "accepted too): a purchase sent again with the same id (a retry after a 503 or a lost answer) is stored "
        "once; the repeat is answered with the stored event and `duplicate: true`.")

    @field_validator("sales_channel_id", mode="before")
    @classmethod
    def _no_bool(cls, value: object) -> object:
        if isinstance(value, bool):  # True == 1 to Python, but not a channel
            raise ValueError("must be 1 or 2, not a boolean")
        return integral(value)


class PurchaseStored(BaseModel):
    customer_id: str
    article_id: str
    t_dat: date
    price: float
    sales_channel_id: int
    request_id: str | None = Field(None, description="As sent: the answer the purchase came from")
    event_id: str | None = Field(None, description="As sent: the client's id for the event")
    duplicate: bool = Field(False, description="True when an event with this `event_id` was stored before: this "
                            "is that event (status 200), and nothing new was stored")


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    model_version: int | None
    articles: int
    customers: int
    data_end: date
    events: Literal["ok", "degraded"] = Field(description="Whether the event store answers; while it does not, reads "
                                              "are answered degraded and writes refused with 503")
    worker: str = Field(description="A random token naming the worker process that answered (one of "
                        "`HMREC_WORKERS`), new each time a worker starts")


class ReloadResponse(BaseModel):
    previous_version: int | None
    model_version: int | None
    workers_serving: int = Field(description="Worker processes serving model_version when this answer was sent")
    workers: int = Field(description="Live worker processes; fewer serving means some could not load it, or "
                         "did not finish within HMREC_RELOAD_WAIT_SECONDS (their logs say which)")


class VariantStatus(BaseModel):
    variant: str = Field(description="The registry alias")
    share: float = Field(description="Its share of the customers (by a hash of the experiment name and customer id)")
    model_version: int | None = Field(description="The version this worker serves for it")
    answers: float = Field(description="Answers that used its model so far (every worker, since they started)")
    answers_by_version: dict[str, float] = Field(description="The same, by the version that answered")


class ExperimentStatus(BaseModel):
    experiment: dict | None = Field(description="The experiment file's content; null: none, the champion answers all")
    variants: list[VariantStatus]
    report: dict | None = Field(None, description="The online figures of `hmrec experiment report`; null while the "
                                   "event store cannot be read")


class ErrorBody(BaseModel):
    detail: str = Field(description="What went wrong, naming the field or id at fault")


class NotReadyBody(ErrorBody):
    status: Literal["loading", "unavailable"] = Field(description="loading: the model is being loaded (the port "
                                                      "opens first); unavailable: the load failed, `detail` says why")


class FieldError(BaseModel):
    field: str = Field(description="The field at fault, dotted (`k`, `customer_id`; `body` for the whole body)")
    location: str = Field(description="Where the field is: body, query or path")
    message: str
    type: str = Field(description="The kind of error, e.g. `int_type`, `json_invalid`, `value_error`")


class ValidationErrorBody(BaseModel):
    detail: str = Field(description="Every error as `field: message`, joined by '; '")
    errors: list[FieldError]


_ERROR_TEXT = {
    401: "No bearer token in the Authorization header, or (live events) a wrong one",
    403: "Wrong admin token, or the operation is turned off (HMREC_ADMIN_TOKEN or HMREC_EVENTS_TOKEN unset)",
    404: "The article is not in the served catalogue",
    409: "The load failed; the previous model keeps serving",
    413: "The body is over HMREC_MAX_BODY_BYTES",
    422: "A field is invalid, or the body cannot be parsed: `detail` names each field",
    429: "More live events from this client than HMREC_EVENTS_PER_CLIENT_PER_SECOND; retry after Retry-After seconds",
    503: "No model is loaded, the event store cannot take a write now, or the worker is busy (HMREC_MAX_IN_FLIGHT "
         "requests already, or a queue over HMREC_MAX_WAIT_MS, HMREC_MAX_EVENT_WAIT_MS for live events): the "
         "detail says which; retry after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "`Bearer`: the scheme the token is sent with",
                                         "schema": {"type": "string"}}}
_HEADERS = {401: WWW_AUTHENTICATE, 429: RETRY_AFTER, 503: RETRY_AFTER}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """The OpenAPI `responses` of an operation's error answers, each with the body the service sends."""
    return {status: {"model": ValidationErrorBody if status == 422 else ErrorBody, "description": _ERROR_TEXT[status],
                     **({"headers": _HEADERS[status]} if status in _HEADERS else {})}
            for status in statuses}
