"""Fakes of outside services for tests (see numerai_server for the fake Numerai)."""

from fakes.numerai_server import (
    PUBLIC_ID,
    SECRET_KEY,
    FakeNumerai,
    FakeState,
    fake_numerai,
    parquet_bytes,
)

__all__ = ["PUBLIC_ID", "SECRET_KEY", "FakeNumerai", "FakeState", "fake_numerai",
           "parquet_bytes"]
