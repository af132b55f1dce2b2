"""Feed and seed state: transitions, save/load round trip, atomic replacement."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.state import (
    FeedState,
    load_feed_states,
    load_seed_state,
    save_feed_states,
    save_seed_state,
)

T1 = datetime(2024, 6, 19, 8, 0, tzinfo=timezone.utc)
T2 = datetime(2024, 6, 19, 9, 0, tzinfo=timezone.utc)
T3 = datetime(2024, 6, 19, 10, 0, tzinfo=timezone.utc)


def test_new_feed_state_is_empty() -> None:
    state = FeedState()
    assert (state.etag, state.last_modified, state.body_sha256, state.last_status) == (None,) * 4
    assert state.consecutive_failures == 0


def test_success_records_validators_and_times() -> None:
    state = FeedState().succeeded(T1, 200, '"e1"', "Wed, 19 Jun 2024 08:00:00 GMT", "sha-1")
    assert (state.etag, state.last_modified, state.body_sha256) == (
        '"e1"',
        "Wed, 19 Jun 2024 08:00:00 GMT",
        "sha-1",
    )
    assert (state.last_status, state.last_http_status, state.consecutive_failures) == ("ok", 200, 0)
    assert state.last_polled_at == state.last_success_at == T1.isoformat()
    assert state.last_error is None


def test_not_modified_keeps_validators_and_body_hash() -> None:
    first = FeedState().succeeded(T1, 200, '"e1"', "lm-1", "sha-1")
    second = first.succeeded(T2, 304)  # a 304 carries no body and often no validators
    assert (second.etag, second.last_modified, second.body_sha256) == ('"e1"', "lm-1", "sha-1")
    assert (second.last_http_status, second.last_success_at) == (304, T2.isoformat())


def test_a_new_200_replaces_validators_even_with_none() -> None:
    first = FeedState().succeeded(T1, 200, '"e1"', "lm-1", "sha-1")
    second = first.succeeded(T2, 200, None, None, "sha-2")
    assert (second.etag, second.last_modified, second.body_sha256) == (None, None, "sha-2")


def test_failures_count_up_keep_validators_and_reset_on_success() -> None:
    ok = FeedState().succeeded(T1, 200, '"e1"', "lm-1", "sha-1")
    once = ok.failed(T2, 503, "HTTP 503")
    twice = once.failed(T3, None, "timeout: ReadTimeout")

    assert (once.consecutive_failures, twice.consecutive_failures) == (1, 2)
    assert (twice.last_status, twice.last_http_status, twice.last_error) == (
        "error",
        None,
        "timeout: ReadTimeout",
    )
    assert twice.last_polled_at == T3.isoformat()
    assert twice.last_success_at == T1.isoformat()  # a failure is not a success
    assert (twice.etag, twice.last_modified, twice.body_sha256) == ('"e1"', "lm-1", "sha-1")
    assert ok.consecutive_failures == 0  # states are immutable values

    recovered = twice.succeeded(T3, 304)
    assert (recovered.consecutive_failures, recovered.last_error, recovered.last_status) == (0, None, "ok")
    assert recovered.etag == '"e1"'


def test_save_load_round_trip(tmp_path: Path) -> None:
    states = {
        "https://b.example.org/feed": FeedState()
        .succeeded(T1, 200, '"é-tag"', "lm", "sha")
        .failed(T2, 429, "HTTP 429"),
        "https://a.example.org/rss": FeedState(),
    }
    path = tmp_path / "state" / "feeds.json"

    save_feed_states(path, states)

    assert load_feed_states(path) == states
    assert list(json.loads(path.read_text(encoding="utf-8"))) == sorted(states)
    assert "é-tag" in path.read_text(encoding="utf-8")  # readable, not \\u-escaped


def test_loading_a_missing_file_means_every_feed_is_new(tmp_path: Path) -> None:
    assert load_feed_states(tmp_path / "nope.json") == {}
    assert load_seed_state(tmp_path / "nope.json") == {}


def test_unknown_keys_in_a_saved_state_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "feeds.json"
    path.write_text(json.dumps({"https://x.example/feed": {"etag": '"e"', "from_the_future": 1}}))
    assert load_feed_states(path) == {"https://x.example/feed": FeedState(etag='"e"')}


def test_seed_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "seeds.json"
    save_seed_state(path, {"seeds/b.txt": "id-b", "seeds/a.md": "id-a"})
    assert load_seed_state(path) == {"seeds/a.md": "id-a", "seeds/b.txt": "id-b"}


def test_save_replaces_the_file_atomically_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "feeds.json"
    old = {"https://x.example/feed": FeedState(etag='"old"')}
    new = {"https://x.example/feed": FeedState(etag='"new"'), "https://y.example/feed": FeedState()}
    save_feed_states(path, old)
    old_inode = path.stat().st_ino

    with open(path, encoding="utf-8") as reader:  # a reader that opened the file before the save
        save_feed_states(path, new)
        assert json.load(reader)["https://x.example/feed"]["etag"] == '"old"'

    assert path.stat().st_ino != old_inode  # a new file renamed over, not rewritten in place
    assert load_feed_states(path) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feeds.json"]


def test_a_failed_save_leaves_the_previous_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "feeds.json"
    old = {"https://x.example/feed": FeedState(etag='"old"', consecutive_failures=3)}
    save_feed_states(path, old)

    def disk_full(payload: Any, fh: Any, **kwargs: Any) -> None:
        fh.write('{"https://x.example/feed": {"et')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("connectors.state.json.dump", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_feed_states(path, {"https://x.example/feed": FeedState(etag='"new"')})
    monkeypatch.undo()

    assert load_feed_states(path) == old
    assert os.path.getsize(path) > 0
