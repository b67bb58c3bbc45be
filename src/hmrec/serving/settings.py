"""The service's settings: one validated pydantic-settings class, read from HMREC_* environment variables."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_TOKEN_LENGTH = 16  # a guessable events token is no better than none


class Settings(BaseSettings):
    """Everything the service can be told; `HMREC_WORKDIR=work HMREC_ADMIN_TOKEN=... hmrec serve` sets them."""

    model_config = SettingsConfigDict(env_prefix="HMREC_", extra="ignore")

    workdir: Path = Field(Path("work"), description="Pipeline working folder holding the registry.")
    events_path: Path | None = Field(None, description="SQLite file of live events; default workdir/events.sqlite.")
    events_url: str | None = Field(None, description="Event store shared by every worker: sqlite:///path (one machine) "
                                   "or postgresql://user@host:port/db (several); default: the SQLite events_path.")
    events_timeout_seconds: float = Field(2.0, gt=0, description="Longest a call to the event store may take; "
                                          "past it, reads answer degraded and writes 503.")
    events_retry_seconds: float = Field(5.0, gt=0, description="After an event store failure, how long before the "
                                        "store is tried again (requests meanwhile degrade at once; the Retry-After "
                                        "of a refused write).")
    experiment_path: Path | None = Field(None, description="The live experiment between registry aliases (`hmrec "
                                         "experiment start`); default workdir/experiment.json. No file: the "
                                         "champion answers everyone.")
    admin_token: str | None = Field(None, description="Bearer token for /admin/*; admin is refused when unset.")
    events_token: SecretStr | None = Field(None, description="Bearer token a client must send to post live events "
                                           "(`Authorization: Bearer <token>`); unset and without `demo`, live events "
                                           "are refused with 403.")
    demo: bool = Field(False, description="Anonymous live events, for a demo on a trusted machine (`hmrec serve "
                       "--demo` sets it): anyone who can reach the port may add purchases to any customer.")
    events_retention_days: int | None = Field(None, ge=0, description="Set: `hmrec serve` first deletes the live "
                                              "events received over this many days ago and dated before the data "
                                              "end of every version a registry alias serves (`hmrec events "
                                              "compact` does it on demand); unset: every event is kept.")
    today: date | None = Field(None, description="The service's date (YYYY-MM-DD): answers are computed as of this "
                               "day at the earliest and live events may be dated up to the day after. Unset: the "
                               "day after the data's end, however long ago that was. A simulation advances it day "
                               "by day (bench/feedback.py).")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    images_dir: Path | None = Field(None, description="The data's images/ folder, served at /images/ if set.")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Larger request bodies are refused with 413.")
    history_limit: int = Field(100, ge=1, description="Most recent purchases per customer given to the model.")
    cache_size: int = Field(100_000, ge=0, description="Answers kept per (customer, k); 0 turns the cache off.")
    batch_max: int = Field(
        64, ge=1, description="Concurrent personalised requests answered by one model call; 1: none.")
    max_in_flight: int = Field(256, ge=1, description="Requests one worker answers at once (at least "
                               "HMREC_BATCH_MAX); beyond, a fast 503 with Retry-After. /health, /ready and /metrics "
                               "are never refused.")
    max_wait_ms: float = Field(50.0, ge=0, description="With 8 or more requests in flight, one whose wait would "
                               "exceed this (the requests in flight x the worker's recent time per answer) gets a "
                               "fast 503 with Retry-After instead; 0: off (HMREC_MAX_IN_FLIGHT alone).")
    max_event_wait_ms: float = Field(25.0, ge=0, description="The same limit for live events (POST "
                                     "/events/purchases), smaller: a purchase can be sent again, a page cannot wait; "
                                     "0: off.")
    events_per_client_per_second: float = Field(200.0, gt=0, description="Live events one client address may post "
                                                "per second to one worker, on average; beyond, 429 with Retry-After.")
    events_burst: int = Field(400, ge=1, description="Live events one client may post at once before the rate "
                              "above applies.")
    purchased_days: int = Field(7, ge=0, description="Articles a customer bought through live events in this many "
                                "last days are not recommended back (unless asked: include_purchased); 0: off.")
    workers: int = Field(1, ge=1, description="Worker processes, each with its own copy of the model; about one per "
                         "core. Events and reloads reach every worker through the events file.")
    threads: int = Field(1, ge=1, description="Threads each worker gives polars, torch and FAISS. One: a request "
                         "is a few milliseconds of small operations, and idle threads spin on cores others need.")
    test_load_gate: Path | None = Field(None, description="Tests only: the model load waits until this file "
                                        "exists, so a test sees the service answer while it loads; unset, it "
                                        "loads at once.")
    access_log: bool = Field(False, description="A log line per request, in hmrec's log format (off: one browsing "
                             "session wrote 89 lines). Off, a worker spends about 8% "
                             "less CPU on a cheap request (see docs/benchmarks.md); /metrics still counts them all.")
    reload_poll_seconds: float = Field(1.0, gt=0, description="How often a worker checks whether another one "
                                       "reloaded the model, and follows.")
    reload_wait_seconds: float = Field(120.0, ge=0, description="How long /admin/reload waits for the other "
                                       "workers to follow before answering.")
    impressions_queue: int = Field(10_000, ge=1, description="Impressions a worker holds before writing them (a "
                                   "batch at least every HMREC_IMPRESSIONS_FLUSH_SECONDS); beyond, new ones are "
                                   "dropped and counted in /metrics, and the answer never waits.")
    impressions_flush_seconds: float = Field(1.0, gt=0, le=1.0, description="How often a worker writes the "
                                             "impressions it holds to the event store (at most 1 s).")
    impressions_retention_days: float = Field(90.0, ge=0, description="Impressions received longer ago are "
                                              "dropped from the event store (checked hourly); 0 keeps them all.")

    heartbeat_seconds: float = Field(2.0, gt=0, description="How often a worker writes its heartbeat to the "
                                     "event store.")
    worker_timeout_seconds: float = Field(10.0, gt=0, description="A worker whose heartbeat is older is taken for "
                                          "dead: /admin/reload stops waiting for it; one that answers no ping from "
                                          "the supervisor for as long is killed and replaced.")

    @field_validator("events_token")
    @classmethod
    def _long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"HMREC_EVENTS_TOKEN has {len(token.get_secret_value())} characters; use at least "
                             f"{MIN_TOKEN_LENGTH}, e.g. the output of `python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'`")
        return token

    @model_validator(mode="after")
    def _timeout_outlasts_heartbeats(self) -> Settings:
        if self.worker_timeout_seconds <= 2 * self.heartbeat_seconds:
            raise ValueError(f"HMREC_WORKER_TIMEOUT_SECONDS ({self.worker_timeout_seconds}) must exceed twice "
                             f"HMREC_HEARTBEAT_SECONDS ({self.heartbeat_seconds}), or live workers look dead")
        return self

    @model_validator(mode="after")
    def _room_for_a_batch(self) -> Settings:
        if self.max_in_flight < self.batch_max:
            raise ValueError(f"HMREC_MAX_IN_FLIGHT ({self.max_in_flight}) must be at least HMREC_BATCH_MAX "
                             f"({self.batch_max}), or no batch could fill")
        return self

    @property
    def events_db(self) -> Path:
        return self.events_path if self.events_path is not None else self.workdir / "events.sqlite"

    @property
    def experiment_file(self) -> Path:
        return self.experiment_path if self.experiment_path is not None else self.workdir / "experiment.json"

    @property
    def events_target(self) -> str | Path:
        """What `open_event_store` opens: HMREC_EVENTS_URL if set, else the SQLite file."""
        return self.events_url or self.events_db
