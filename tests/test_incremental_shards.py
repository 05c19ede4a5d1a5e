"""--mode incremental on shards through the CLI: an unchanged shard is skipped without being
opened and its samples count as skipped; a changed one is read again and compared sample by
sample."""

from __future__ import annotations

import os
import tarfile

import numpy as np
import pyarrow.parquet as pq

from images import encode, rgb_pattern
from pipeline.root import incremental
from pipeline.inspection.results import read_layer
from pipeline.run import EXIT_OK, run
from reference import assert_same_embeddings
from schemas import layout
from test_shards import PICTURES, _tar, write_img2dataset_parquet, write_tfrecord, write_webdataset

COUNTS = ("matched", "read", "embedded", "errors", "skipped_unchanged", "skipped_same_content")


def argv(folder, out, *extra):
    return ["--input", str(folder / "*"), "--output", str(out), "--weights", "random",
            "--image_size", "32", "--layers", "res5", *extra]


def counts(root) -> list[tuple]:
    return [tuple(entry["counts"][name] for name in COUNTS) for entry in incremental.index_entries(str(root))]


def replace_keeping_listing(path, data: bytes) -> None:
    """Other bytes of the same size under the same modification time: a run that opened the
    file would find it broken; one that trusts the listing never notices."""
    before = path.stat()
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_unchanged_shards_are_not_opened_and_changed_ones_are_compared_by_sample(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    folder.mkdir()
    write_webdataset(folder / "a.tar")                      # 4 samples
    write_img2dataset_parquet(folder / "b.parquet")         # 4 images and a failed download
    write_tfrecord(folder / "c.tfrecord")                   # 4 records
    loose = encode(rgb_pattern(40, 48, 70), "PNG")
    (folder / "loose.png").write_bytes(loose)
    good = encode(rgb_pattern(40, 48, 71), "PNG")
    _tar(folder / "e.tar", [("good.png", good), ("fake.jpg", b"not an image")])  # fails at decode

    assert run(argv(folder, root, "--mode", "incremental")) == EXIT_OK
    shard_rows = {r["uri"].rsplit("/", 1)[1]: (r["samples"], r["refused"]) for r in pq.read_table(
        layout.shards_dir(incremental.index_entries(str(root))[0]["partition"])).to_pylist()}
    assert shard_rows == {"a.tar": (4, 0), "b.parquet": (5, 1), "c.tfrecord": (4, 0), "e.tar": (2, 0)}

    # Run 2: nothing changed. a, b and c hold other bytes under the same listing, so a run
    # that opened them would fail on them. e.tar is read again (its fake member failed
    # after reading, so it is not done), its good sample skipped as known.
    originals = {name: (folder / name).read_bytes() for name in ("a.tar", "b.parquet", "c.tfrecord")}
    listings = {name: (folder / name).stat() for name in originals}
    for name, data in originals.items():
        replace_keeping_listing(folder / name, b"\0" * len(data))
    assert run(argv(folder, root, "--mode", "incremental")) == EXIT_OK
    for name, data in originals.items():
        replace_keeping_listing(folder / name, data)
        assert (folder / name).stat().st_mtime_ns == listings[name].st_mtime_ns

    # Run 3: a.tar rewritten with a fifth sample, b.parquet touched, a new shard d.tar
    # holding the loose file's picture and a new one; c.tfrecord and loose.png unchanged.
    new_picture = encode(rgb_pattern(40, 48, 72), "JPEG")
    _tar(folder / "a.tar", [(f"{k}.{'jpg' if int(k) % 2 else 'png'}", d) for k, d in PICTURES.items()]
         + [("000000009.jpg", new_picture)])
    os.utime(folder / "b.parquet", ns=(listings["b.parquet"].st_atime_ns, listings["b.parquet"].st_mtime_ns + 10**9))
    third = encode(rgb_pattern(40, 48, 73), "PNG")
    _tar(folder / "d.tar", [("same.png", loose), ("new.png", third)])
    assert run(argv(folder, root, "--mode", "incremental")) == EXIT_OK
    assert run(argv(folder, root, "--mode", "incremental")) == EXIT_OK  # Run 4: nothing changed.

    # (matched, read, embedded, errors, skipped_unchanged, skipped_same_content)
    assert counts(root) == [
        (16, 15, 14, 2, 0, 0),   # 4 + 5 + 4 + 1 + 2; errors: the failed download, fake.jpg
        (16, 1, 0, 1, 15, 0),    # 3 shards (13 samples) unopened + loose + e's good sample
        (19, 12, 2, 2, 6, 9),    # a: 5 read, 4 same; b: 4 read, all same; d: 2 read, 1 same
        (19, 1, 0, 1, 18, 0),
    ]
    # Each (uri, picture) embedded once; a, b and c hold the same 4 pictures, which a first
    # run embeds in each (nothing earlier to compare with). The values are a full run's.
    rows = read_layer(str(root), "res5")
    assert len(rows.uris) == len(set(rows.uris)) == 16 and len(set(rows.image_ids)) == 8
    assert run(argv(folder, tmp_path / "single")) == EXIT_OK
    reference = read_layer(str(tmp_path / "single"), "res5")
    assert set(rows.image_ids) == set(reference.image_ids)
    by_id = dict(zip(reference.image_ids, reference.matrix))
    assert_same_embeddings(rows.matrix, np.stack([by_id[i] for i in rows.image_ids]))
    # What run 3 recorded so that run 4 opens only e.tar: the same-content samples in
    # skipped/ (with their shard as source), and each shard read to its end in shards/.
    third_run = incremental.index_entries(str(root))[2]["partition"]
    skipped = pq.read_table(layout.skipped_dir(third_run)).to_pylist()
    assert sorted(r["uri"].rsplit("/", 1)[1] for r in skipped) == sorted(
        [f"a.tar#{k}" for k in PICTURES] + [f"b.parquet#{k}" for k in PICTURES] + ["d.tar#same"])
    assert all(r["uri"].startswith(r["source"] + "#") for r in skipped)
    assert sorted(r["uri"].rsplit("/", 1)[1] for r in pq.read_table(layout.shards_dir(third_run)).to_pylist()) == [
        "a.tar", "b.parquet", "d.tar", "e.tar"]


def test_a_shard_broken_off_is_read_again_and_only_its_rest_embedded(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    folder.mkdir()
    write_webdataset(folder / "whole.tar")
    whole = (folder / "whole.tar").read_bytes()
    with tarfile.open(folder / "whole.tar") as tar:
        third_image = [m for m in tar.getmembers() if m.name.startswith("000000002.")][0]
    (folder / "whole.tar").unlink()
    (folder / "s.tar").write_bytes(whole[:third_image.offset_data + 100])  # 2 samples, then the cut
    assert run(argv(folder, root, "--mode", "incremental")) == EXIT_OK
    first = counts(root)[0]
    assert first == (3, 2, 2, 1, 0, 0)  # 2 samples and one ShardBroken row
    assert not pq.read_table(layout.shards_dir(incremental.index_entries(str(root))[0]["partition"])).num_rows
    (folder / "s.tar").write_bytes(whole)  # repaired
    assert run(argv(folder, root, "--mode", "incremental")) == EXIT_OK
    assert run(argv(folder, root, "--mode", "incremental")) == EXIT_OK
    # The repaired shard has a new listing: its samples are hashed, the ones embedded
    # before skipped for their content; then it is done and never opened again.
    assert counts(root)[1:] == [(4, 4, 4 - first[2], 0, 0, first[2]), (4, 0, 0, 0, 4, 0)]
    assert sorted(read_layer(str(root), "res5").uris) == sorted(f"{folder / 's.tar'}#{k}" for k in PICTURES)
