import pytest

from app.models.keys import Role
from app.services.actor import Actor, Channel
from app.services.errors import PermissionDenied
from app.services.permissions import Permission, require

# The contract from PRODUCT.md "Roles", written out rather than derived from the code under test.
EXPECTED = {
    Role.VIEWER: {Permission.READ},
    Role.SUPPORT: {Permission.READ, Permission.OVERRIDE_ENTITLEMENTS, Permission.RESET_GRACE},
    Role.ADMIN: set(Permission),
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_each_role_has_exactly_its_permissions(role, permission):
    actor = Actor(name="k", role=role, channel=Channel.API)
    if permission in EXPECTED[role]:
        require(actor, permission)
    else:
        with pytest.raises(PermissionDenied, match=f"{role} role may not"):
            require(actor, permission)
