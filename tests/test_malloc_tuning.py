"""models/malloc_tuning.py: a decoding process keeps the pages of freed image buffers, so
the next image's buffers cost no page faults; a user's own malloc setting wins. Each test
runs in a fresh Python, so nothing here changes the test process's allocator."""

import os

from fresh_python import fresh_python
from models.malloc_tuning import USER_SETTINGS

#: Minor page faults of one thread in each of 20 cycles of a camera photo's buffers (36 MB
#: decoded, over glibc's own highest mmap threshold of 32 MB, so a fresh mapping each time
#: by default; then 150 KB resized and a 4.8 MB batch), after two cycles of warm-up; with
#: "tuned", keep_freed_memory() is called first. Prints the faults per cycle (comma
#: separated), what the call returned (None when not called) and what a second call returns.
_FAULTS = """
    import resource, sys, threading
    import numpy as np
    from models.malloc_tuning import keep_freed_memory

    def faults_per_cycle(cycles):
        counted = []
        def work():
            for _ in range(cycles):
                start = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
                buffers = [np.ones(size, np.uint8) for size in (36_000_000, 150_528, 4_816_896)]
                del buffers  # written: every page was touched
                counted.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - start)
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        return counted

    applied = keep_freed_memory() if sys.argv[1] == "tuned" else None
    faults_per_cycle(2)
    print(",".join(map(str, faults_per_cycle(20))), applied,
          keep_freed_memory() if applied is not None else None)
"""
#: A fresh 36 MB mapping faults at least 18 times (2 MB huge pages), 8,790 (4 KB pages).
FRESH_MAPPING_FAULTS = 18


def _python(code: str, *args: str, **env: str) -> str:
    """Run ``code`` in a fresh Python whose environment has no malloc setting but ``env``."""
    clean = {name: value for name, value in os.environ.items() if name not in USER_SETTINGS}
    return fresh_python(code, *args, env={**clean, **env})


def _cycles(out: str) -> tuple[list[int], str, str]:
    faults, applied, again = out.split()
    return [int(n) for n in faults.split(",")], applied, again


def test_freed_buffers_are_reused_without_page_faults_once_set():
    default, _, _ = _cycles(_python(_FAULTS, "default"))
    tuned, applied, again = _cycles(_python(_FAULTS, "tuned"))
    assert (applied, again) == ("True", "True")
    assert min(default) >= FRESH_MAPPING_FAULTS  # every cycle maps its photo afresh
    # Reused: most cycles fault less than one fresh mapping would (a busy host's kernel may
    # reclaim a free page now and then).
    assert sum(n < FRESH_MAPPING_FAULTS for n in tuned) >= 15, tuned


def test_a_users_malloc_setting_wins():
    faults, applied, again = _cycles(_python(_FAULTS, "tuned", MALLOC_TRIM_THRESHOLD_="1048576"))
    assert (applied, again) == ("False", "False")
    assert min(faults) >= FRESH_MAPPING_FAULTS  # still a fresh mapping per decoded photo


def test_a_worker_sets_it_when_its_prepare_step_is_set_up():
    out = _python("""
        import models.malloc_tuning as tuning
        from schemas import ExtractionConfig
        from transforms.prepare import PrepareBatches, _PrepareFn
        fn = _PrepareFn(PrepareBatches(ExtractionConfig(layers=("res2",), batch_size=4, weights="random"))._steps)
        print(tuning._applied)
        fn.setup()
        print(tuning._applied)
    """)
    assert out.split() == ["None", "True"]
