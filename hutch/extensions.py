"""Build the per-app services (keys, database, token validation) from settings."""

from __future__ import annotations

import logging

from sqlalchemy import select

from hutch.api.common import Hutch
from hutch.auth import Authenticator
from hutch.auth.oidc import key_source
from hutch.auth.tokens import TokenValidator
from hutch.schemas import CoinIn, ProfileIn, SafeIn, SafeKeyIn, for_update
from hutch.settings import Settings
from hutch.signing import SigningKeys
from hutch.store.db import Database, create_db_engine
from hutch.store.items import COINS, SAFE_KEYS, Items
from hutch.store.replay import ReplayCache
from hutch.store.schema import profile

log = logging.getLogger(__name__)


def build_hutch(settings: Settings) -> Hutch:
    signing = SigningKeys.load(settings.sign_key, settings.sign_exp)
    db = Database(create_db_engine(settings.database, must_exist=True))
    validator = TokenValidator(settings.oidc, key_source(settings.oidc), settings.scopes,
                               max_lifetime=settings.max_token_lifetime)
    authenticator = Authenticator(settings, validator, ReplayCache(db))
    schemas = {
        "profile": ProfileIn(signing.kids),
        "safe": SafeIn(),
        "safe_update": for_update(SafeIn),
        "safe_key": SafeKeyIn(),
        "safe_key_update": for_update(SafeKeyIn),
        "coin": CoinIn(),
        "coin_update": for_update(CoinIn),
    }
    return Hutch(settings=settings, db=db, signing=signing, authenticator=authenticator,
                 safe_keys=Items(db, SAFE_KEYS), coins=Items(db, COINS), schemas=schemas)


def warn_stale_sign_kids(hutch: Hutch) -> list[str]:
    """Log every profile ``sign_kid`` missing from the signing JWKS (§13.11)."""
    query = (select(profile.c.hp_sign_kid).where(profile.c.hp_deleted == 0,
                                                 profile.c.hp_sign_kid.is_not(None)).distinct())
    with hutch.db.read() as conn:
        kids = [kid for kid in conn.execute(query).scalars() if not hutch.signing.has(kid)]
    for kid in kids:
        log.warning("profiles name sign_kid %r, which is not in the signing JWKS; their answers "
                    "are signed with %r until they choose another key", kid,
                    hutch.signing.first_kid)
    return kids
