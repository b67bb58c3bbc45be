"""Hand-made raw H&M files for the ETL tests: a small valid dataset that each test spoils in one way."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmrec.raw import schema
from hmrec.raw.read import RawDataError
from hmrec.store.build import build_store
from hmrec.store.tables import Store

CUSTOMER_HEADER = ",".join(schema.CUSTOMER_COLUMNS)
ARTICLE_HEADER = ",".join(schema.ARTICLE_COLUMNS)
TRANSACTION_HEADER = ",".join(schema.TRANSACTION_COLUMNS)

CUSTOMERS = [
    "c1,1.0,1.0,ACTIVE,Regularly,49.0,p1",
    "c2,,,ACTIVE,None,23,p2",
    "c3,,,PRE-CREATE,NONE,,p3",
]


def article(article_id: str, product_code: int, index_group_no: int = 1, desc: str = "Soft top") -> str:
    """One articles.csv row; `desc` is quoted, so it may hold commas."""
    return (
        f"{article_id},{product_code},Top,253,Vest top,Garment Upper body,1010016,Solid,9,Black,4,Dark,5,Black,"
        f"1676,Jersey Basic,A,Ladieswear,{index_group_no},Ladieswear,16,Womens Everyday Basics,1002,"
        f'Jersey Basic,"{desc}"'
    )


ARTICLES = [article("0663713001", 663713), article("0663713002", 663713), article("0541518023", 541518, 2)]

TRANSACTIONS = [
    "2020-09-01,c1,0663713001,0.0508,2",
    "2020-09-01,c1,0663713001,0.0508,2",
    "2020-09-03,c2,0541518023,0.0304,1",
    "2020-09-08,c3,0663713002,0.0200,2",
    "2020-09-10,c1,0541518023,0.0300,2",
]


def write_csv(path: Path, header: str, rows: list[str], newline: str = "\n", bom: bool = False,
              final_newline: bool = True) -> None:
    text = newline.join([header, *rows]) + (newline if final_newline else "")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())


def write_raw(folder: Path, customers: list[str] | None = None, articles: list[str] | None = None,
              transactions: list[str] | None = None, **options) -> Path:
    """Write the three files (the valid defaults unless given); `options` go to write_csv for every file."""
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / schema.CUSTOMERS_FILE, CUSTOMER_HEADER, CUSTOMERS if customers is None else customers, **options)
    write_csv(folder / schema.ARTICLES_FILE, ARTICLE_HEADER, ARTICLES if articles is None else articles, **options)
    write_csv(folder / schema.TRANSACTIONS_FILE, TRANSACTION_HEADER,
              TRANSACTIONS if transactions is None else transactions, **options)
    return folder


def fails(tmp_path, raw) -> str:
    """Build, expect a RawDataError, check nothing appeared at the store path; return the message."""
    out = tmp_path / "store"
    with pytest.raises(RawDataError) as caught:
        build_store(raw, out)
    message = str(caught.value)
    assert "\n" not in message
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".store")], "temporary build folder left behind"
    return message


def built(tmp_path, raw) -> Store:
    build_store(raw, tmp_path / "store")
    return Store(tmp_path / "store")
