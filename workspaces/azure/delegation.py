"""The condition on the bot's role assignment that limits what it may grant (Azure ABAC).

The bot holds `roleAssignments/write` and `/delete` to grant and revoke access. Without a
condition that would let it (or anyone holding its token) assign Owner. Microsoft's pattern
for delegating role assignment ("constrain roles and principal types", in "Examples to
delegate Azure role assignment management with conditions") is a condition on the delegate's
own assignment: writes must carry one of the listed role definition ids and a listed
principal type (`@Request[...]`), deletes may only remove such assignments
(`@Resource[...]`). Azure evaluates it on every call; `conditionVersion` is "2.0".

Pure: rendering the condition, and reading one back to check it limits what it must.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CONDITION_VERSION = "2.0"
# AzureML Data Scientist: the role policy grants unless `access.role` names another.
DATA_SCIENTIST_ROLE_ID = "f6c7c914-8db3-469d-8ca1-694a8f32e121"
ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"
WRITE = f"{ASSIGNMENTS}/write"
DELETE = f"{ASSIGNMENTS}/delete"


@dataclass(frozen=True)
class Limits:
    """What one action of the condition allows: these roles, to these principal types."""

    role_ids: frozenset[str]  # lower-case GUIDs
    principal_types: frozenset[str]  # lower-case


def render(role_ids: list[str], principal_types: tuple[str, ...] = ("User",)) -> str:
    """The condition for the bot's own role assignment, in Microsoft's documented form."""
    roles = ", ".join(sorted({guid_of(r).lower() for r in role_ids}))
    types = ", ".join(f"'{t}'" for t in principal_types)
    blocks = []
    for action, source in ((WRITE, "Request"), (DELETE, "Resource")):
        blocks.append(
            "(\n"
            f" (\n  !(ActionMatches{{'{action}'}})\n )\n OR\n (\n"
            f"  @{source}[{ASSIGNMENTS}:RoleDefinitionId]"
            f" ForAnyOfAnyValues:GuidEquals {{{roles}}}\n"
            "  AND\n"
            f"  @{source}[{ASSIGNMENTS}:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase"
            f" {{{types}}}\n"
            " )\n)"
        )
    return "\nAND\n".join(blocks)


def guid_of(role_definition_id: str) -> str:
    """`/subscriptions/.../roleDefinitions/GUID` or a bare GUID -> the GUID."""
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1]


_BLOCK = re.compile(
    r"!\s*\(\s*ActionMatches\s*\{\s*'(?P<action>[^']+)'\s*\}\s*\)\s*\)\s*OR\s*\((?P<body>[^()]*)\)",
    re.IGNORECASE,
)
_ROLES = re.compile(
    r"^@(?P<source>Request|Resource)\[Microsoft\.Authorization/roleAssignments:RoleDefinitionId\]"
    r"\s+ForAnyOfAnyValues:GuidEquals\s*\{(?P<values>[^}]*)\}$",
    re.IGNORECASE,
)
_TYPES = re.compile(
    r"^@(?P<source>Request|Resource)\[Microsoft\.Authorization/roleAssignments:PrincipalType\]"
    r"\s+ForAnyOfAnyValues:StringEqualsIgnoreCase\s*\{(?P<values>[^}]*)\}$",
    re.IGNORECASE,
)


def parse(condition: str | None) -> dict[str, Limits]:
    """The limits a condition of the documented form sets, by action (lower-case).

    Only that form is understood: a condition written otherwise yields no limits for the
    action, so a check treats it as unverified rather than guessing."""
    found: dict[str, Limits] = {}
    for block in _BLOCK.finditer(condition or ""):
        action = block["action"].lower()
        source = "request" if action == WRITE.lower() else "resource"
        roles: frozenset[str] | None = None
        types: frozenset[str] | None = None
        for clause in re.split(r"\s+AND\s+", block["body"].strip(), flags=re.IGNORECASE):
            clause = clause.strip()
            if (m := _ROLES.match(clause)) and m["source"].lower() == source:
                roles = frozenset(v.strip().lower() for v in m["values"].split(",") if v.strip())
            elif (m := _TYPES.match(clause)) and m["source"].lower() == source:
                types = frozenset(
                    v.strip().strip("'").lower() for v in m["values"].split(",") if v.strip()
                )
            else:
                roles = None  # an unknown clause: the block says something else
                break
        if roles is not None:
            found[action] = Limits(roles, types if types is not None else frozenset({"*"}))
    return found


def problems(
    condition: str | None,
    version: str | None,
    *,
    permitted: list[str],
    required: list[str],
    principal_types: set[str],
) -> list[str]:
    """What is wrong with the condition on the bot's assignment, as sentences; [] if sound.

    Sound: both actions limited to roles among `permitted` that include `required` (or
    grants would fail), and to `principal_types`."""
    if not condition:
        return ["carries no condition, so the bot could assign any role (Owner too)"]
    if version != CONDITION_VERSION:
        return [f"has conditionVersion {version!r}, not '{CONDITION_VERSION}'"]
    allowed = {guid_of(r).lower() for r in permitted}
    needed = {guid_of(r).lower() for r in required}
    types = {t.lower() for t in principal_types}
    limits = parse(condition)
    found: list[str] = []
    for action in (WRITE, DELETE):
        limit = limits.get(action.lower())
        if limit is None:
            found.append(f"has a condition that does not limit `{action}` to listed roles")
            continue
        if extra := sorted(limit.role_ids - allowed):
            found.append(f"lets `{action}` use roles policy does not grant: {', '.join(extra)}")
        if missing := sorted(needed - limit.role_ids):
            found.append(f"does not let `{action}` use the policy's roles: {', '.join(missing)}")
        if not limit.principal_types <= types:
            found.append(
                f"lets `{action}` reach principal types other than {', '.join(sorted(types))}"
            )
    return found
