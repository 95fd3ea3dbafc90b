import sys

import pytest

from edge_mm.runtime.malloc import limit_malloc_arenas


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_arena_cap_is_accepted_by_glibc():
    assert limit_malloc_arenas(2) is True
