"""Feast Permission objects -> PermissionSpec (imports feast: parse time only).

What a permission covers is asked of Feast itself (`Permission.match_resource` and
`match_actions`), so types (subclasses included), name_patterns and required_tags mean
exactly what they mean to `feast serve`; `featureline serve` then only unions the
grants of the policies a token satisfies (serving_api.feast_auth).
"""

from __future__ import annotations

from typing import Any

from featureline.specs import PermissionSpec


def _policy(policy: Any) -> tuple[str, dict[str, tuple[str, ...]]]:
    """(kind, members) of a Feast policy; unknown kinds grant nothing ("unknown")."""
    from feast.permissions.policy import (
        CombinedGroupNamespacePolicy,
        GroupBasedPolicy,
        NamespaceBasedPolicy,
        RoleBasedPolicy,
    )

    if isinstance(policy, RoleBasedPolicy):
        return "roles", {"roles": tuple(policy.get_roles())}
    if isinstance(policy, CombinedGroupNamespacePolicy):
        return "groups_namespaces", {
            "groups": tuple(policy.get_groups()),
            "namespaces": tuple(policy.get_namespaces()),
        }
    if isinstance(policy, GroupBasedPolicy):
        return "groups", {"groups": tuple(policy.get_groups())}
    if isinstance(policy, NamespaceBasedPolicy):
        return "namespaces", {"namespaces": tuple(policy.get_namespaces())}
    if type(policy).__name__ == "AllowAll":  # feast.permissions.policy.AllowAll is an instance
        return "allow_all", {}
    return "unknown", {}


def _covered(permission: Any, objects: Any) -> tuple[str, ...]:
    return tuple(sorted({o.name for o in objects if permission.match_resource(o)}))


def convert_permissions(contents: Any) -> tuple[PermissionSpec, ...]:
    """Every Permission of the repo, with the views and services it lets read online."""
    from feast.permissions.action import AuthzedAction

    views = [
        *contents.feature_views,
        *contents.stream_feature_views,
        *getattr(contents, "label_views", []),
        *contents.on_demand_feature_views,
    ]
    specs = []
    for permission in getattr(contents, "permissions", []):
        reads = permission.match_actions([AuthzedAction.READ_ONLINE])
        kind, members = _policy(permission.policy)
        specs.append(
            PermissionSpec(
                name=permission.name,
                policy=kind,
                views=_covered(permission, views) if reads else (),
                services=_covered(permission, contents.feature_services) if reads else (),
                **members,
            )
        )
    return tuple(specs)
