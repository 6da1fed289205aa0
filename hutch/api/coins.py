"""/{prefix}/safe/{safe}/coin[/{coin}]: the encrypted secrets of a safe (§7.4)."""

from hutch.api.common import hutch
from hutch.api.items import item_blueprint

bp = item_blueprint("coins", "coin", lambda: hutch().coins, "coin")
