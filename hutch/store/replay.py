"""DPoP proof ids already seen, shared by every worker process through the database."""

from __future__ import annotations

import hashlib
import random

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from hutch.store.db import Database
from hutch.store.schema import dpop_jti

PURGE_CHANCE = 0.01


class ReplayCache:
    def __init__(self, db: Database):
        self._db = db

    def remember(self, jti: str, jkt: str, expires_at: int, now: int) -> bool:
        """Record a proof id; False when it was already recorded (a replay)."""
        ident = hashlib.sha256(f"{jkt}\x00{jti}".encode("utf-8", "surrogatepass")).hexdigest()
        try:
            with self._db.write() as conn:
                if random.random() < PURGE_CHANCE:
                    conn.execute(delete(dpop_jti).where(dpop_jti.c.hdj_expires_at < now))
                conn.execute(insert(dpop_jti).values(hdj_id=ident, hdj_expires_at=expires_at))
        except IntegrityError:
            return False
        return True
