"""The local stack's launchers (pure parts)."""

from __future__ import annotations

from tongxin.devstack.kafka import new_cluster_id


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    ids = [new_cluster_id() for _ in range(2000)]  # ~31 would start with "-" if not redrawn
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)
