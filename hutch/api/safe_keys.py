"""/{prefix}/safe/{safe}/key[/{key}]: wrapped copies of a safe's master key (§7.3)."""

from hutch.api.common import hutch
from hutch.api.items import item_blueprint

bp = item_blueprint("safe_keys", "key", lambda: hutch().safe_keys, "safe_key")
