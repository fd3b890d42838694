"""Windowing: every key of a session is checked, short sessions included, streaming == batch."""

import numpy as np

from export.contract.vocab import END, START
from export.contract.windows import WindowStream, session_windows, windows_of_sessions


def test_a_short_session_is_padded_with_start_not_skipped():
    windows, next_keys = session_windows([5, 6], h=4)
    assert windows.tolist() == [
        [START, START, START, START],
        [START, START, START, 5],
        [START, START, 5, 6],
    ]
    assert next_keys.tolist() == [5, 6, END]


def test_without_an_end_marker_the_last_key_is_the_last_check():
    windows, next_keys = session_windows([5, 6, 7], h=2, end_marker=False)
    assert next_keys.tolist() == [5, 6, 7]
    assert windows[-1].tolist() == [5, 6]


def test_each_session_gives_one_window_per_key_plus_its_end():
    sessions = [[3, 4, 5], list(range(3, 30)), [9]]
    windows, next_keys = windows_of_sessions(sessions, h=10)
    assert windows.shape == (3 + 27 + 1 + 3, 10)
    assert windows.dtype == np.int64 and next_keys.dtype == np.int64


def test_streamed_windows_equal_the_batch_windows():
    keys = [4, 4, 7, 3, 9, 9, 9, 5, 6, 3, 8, 4, 4]
    batch_windows, batch_next = session_windows(keys, h=5)
    stream = WindowStream(5)
    steps = [stream.push(k) for k in keys]
    steps.append(stream.close())
    assert [list(w) for w, _ in steps] == batch_windows.tolist()
    assert [p for _, p in steps] == list(range(len(keys) + 1))
    assert batch_next.tolist() == [*keys, END]


def test_no_sessions_give_empty_arrays_of_the_right_shape():
    windows, next_keys = windows_of_sessions([], h=10)
    assert windows.shape == (0, 10) and next_keys.shape == (0,)
