"""Script calls never split one entity's tile hashes (online.tiles.tile_key tags the
entity), so a reader never sees one tile size of an entity updated and another not."""

from __future__ import annotations

from featureline.online.tiles import tile_key
from featureline.online_store.redis.store import hash_tag, pack_groups, tag_groups


def test_hash_tag_follows_redis_rules() -> None:
    assert hash_tag(b"a{user1}b") == b"user1"
    assert hash_tag(b"a{}b{x}") == b"a{}b{x}"  # an empty tag: the whole key
    assert hash_tag(b"plain") == b"plain"
    assert hash_tag(b"a{u}s}e{r}") == b"u"  # the first '}' after the first '{'
    entity = b"\x01\x00\x00\x00}odd"  # a '}' inside the entity bytes: still one tag
    assert len({hash_tag(tile_key("p", "v", s, entity)) for s in (60, 3600, 86400)}) == 1


def test_an_entitys_tile_hashes_go_in_one_call() -> None:
    entities = [b"\x01\x00\x00\x00e%d" % i for i in range(1000)]
    keys = [tile_key("p", "v", s, e) for e in entities for s in (60, 3600, 86400)]
    calls = list(pack_groups(tag_groups(keys), 400))
    assert sorted(i for call in calls for i in call) == list(range(len(keys)))
    assert all(len(call) <= 400 for call in calls) and len(calls) == 8  # 133 entities a call
    for call in calls:
        tags = {hash_tag(keys[i]) for i in call}
        assert len(call) == 3 * len(tags)  # every tag in this call has all 3 of its keys here


def test_a_group_larger_than_a_call_stays_whole() -> None:
    keys = [b"k{big}%d" % i for i in range(500)] + [b"x", b"y"]
    calls = list(pack_groups(tag_groups(keys), 400))
    assert calls == [list(range(500)), [500, 501]]
