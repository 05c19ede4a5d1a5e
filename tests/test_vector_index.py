"""pipeline/inspection/vector_index.py and index_choice.py: an index over two runs equals
one built at once, leaves untrusted runs out, answers as brute force does, and a damaged
index is a message and a rebuild."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

from pipeline.inspection import index_choice
from pipeline.inspection.neighbors import indexed, nearest, nearest_indexed
from pipeline.inspection.vector_index import (
    IndexProblem, PooledOnly, build, ensure_index, read_stored, search,
)
from pipeline.run import EXIT_OK, run
from schemas import layout
from test_incremental import add_images, argv, runs


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """An incremental root with two runs (12 then 8 images), res2 and res5 pooled."""
    base = tmp_path_factory.mktemp("index")
    folder, root = base / "in", base / "root"
    add_images(folder, 0, 12)
    assert run(argv(folder, root)) == EXIT_OK
    add_images(folder, 12, 8)
    assert run(argv(folder, root)) == EXIT_OK
    return folder, root


def _copy(root: pathlib.Path, to: pathlib.Path) -> pathlib.Path:
    import shutil

    shutil.copytree(root, to)
    return to


def _answers(stored, k=5) -> list[list[tuple[str, str]]]:
    queries = np.stack([stored.index.reconstruct(i) for i in range(stored.index.ntotal)])
    _, rows = search(stored, queries, k)
    return [sorted((stored.image_ids[r], stored.uris[r]) for r in row) for row in rows]


def test_an_index_kept_run_by_run_equals_one_built_at_once(two_runs, tmp_path):
    folder, source = two_runs
    root = _copy(source, tmp_path / "root")
    first, second = runs(root)
    second_entry = layout.run_index_entry(str(root), second["run"])
    os.rename(second_entry, second_entry + ".held")  # the root as it was after run 1
    stored, said = ensure_index(str(root), "res5")
    assert "built Flat over 12 vectors" in said and stored.meta["runs"] == [first["run"]]
    os.rename(second_entry + ".held", second_entry)
    grown, said = ensure_index(str(root), "res5")
    assert "added 1 run(s), 8 vectors (now 20)" in said
    assert ensure_index(str(root), "res5")[1].endswith("up to date: Flat, 20 vectors")
    at_once = build(runs(root), "res5")
    assert sorted(zip(grown.image_ids, grown.uris)) == sorted(zip(at_once.image_ids, at_once.uris))
    by_row = {pair: i for i, pair in enumerate(zip(at_once.image_ids, at_once.uris))}
    order = [by_row[pair] for pair in zip(grown.image_ids, grown.uris)]
    np.testing.assert_allclose(np.stack([grown.index.reconstruct(i) for i in range(20)]),
                               np.stack([at_once.index.reconstruct(i) for i in order]), rtol=1e-6)
    assert _answers(grown) == [_answers(at_once)[i] for i in order]


def test_a_run_set_aside_as_untrusted_is_left_out(two_runs, tmp_path):
    _, source = two_runs
    root = _copy(source, tmp_path / "root")
    ensure_index(str(root), "res5")
    first, second = runs(root)
    entry = layout.run_index_entry(str(root), second["run"])
    os.rename(entry, entry + ".untrusted")
    stored, said = ensure_index(str(root), "res5")
    assert "holds runs no longer trusted or gone" in said and "rebuilt" in said
    assert stored.meta["runs"] == [first["run"]] and stored.index.ntotal == 12


def test_neighbours_through_the_index_equal_brute_force(two_runs, tmp_path):
    folder, source = two_runs
    root = _copy(source, tmp_path / "root")
    assert indexed(str(root), "res5")[0] is None  # no index yet: brute force, said so
    ensure_index(str(root), "res5")
    stored, how = indexed(str(root), "res5")
    assert stored is not None and "from the index" in how
    for name in ("img000.png", "img013.png", "img019.png"):
        image = str(folder / name)
        through_index = nearest_indexed(stored, "res5", image, k=6)
        brute = nearest(str(root), "res5", image, k=6)
        assert [n.uri for n in through_index] == [n.uri for n in brute]
        np.testing.assert_allclose([n.cosine for n in through_index], [n.cosine for n in brute], atol=1e-5)


@pytest.mark.parametrize("damage", ["vectors deleted", "vectors cut off", "rows cut off", "index.json garbled"])
def test_a_damaged_index_is_named_and_rebuilt(two_runs, tmp_path, damage):
    _, source = two_runs
    root = _copy(source, tmp_path / "root")
    stored, _ = ensure_index(str(root), "res5")
    folder = pathlib.Path(layout.vector_index_dir(str(root), "res5", stored.meta["embedding_key"]))
    target = {"vectors": folder / stored.meta["vectors_file"], "rows": folder / stored.meta["rows_file"],
              "index.json": folder / "index.json"}[damage.split()[0]]
    if damage.endswith("deleted"):
        target.unlink()
    elif damage.endswith("cut off"):
        target.write_bytes(target.read_bytes()[:100])
    else:
        target.write_text("{not json")
    with pytest.raises(IndexProblem, match=str(target.name).replace(".", r"\.")):
        read_stored(str(folder))
    assert indexed(str(root), "res5")[0] is None  # never trusted silently
    rebuilt, said = ensure_index(str(root), "res5")
    assert target.name in said and said.endswith("; rebuilt") and rebuilt.index.ntotal == 20
    assert read_stored(str(folder)).index.ntotal == 20


def test_feature_maps_are_refused(tmp_path):
    folder, root = tmp_path / "in", tmp_path / "root"
    add_images(folder, 0, 3)
    assert run(argv(folder, root, "--pooling", "none")) == EXIT_OK
    with pytest.raises(PooledOnly, match="--pooling none"):
        ensure_index(str(root), "res2")


def test_the_choice_follows_the_count_and_the_memory():
    gib = 2**30
    assert index_choice.choose_index(50_000, 2048, 4 * gib).factory == "Flat"
    assert index_choice.choose_index(400_000, 2048, 4 * gib).factory == "IVF2048,Flat"
    assert index_choice.choose_index(1_000_000, 2048, 4 * gib).factory == "IVF4096,SQ8"
    assert index_choice.choose_index(10_000_000, 2048, 4 * gib).factory == "IVF16384,PQ256"
    assert index_choice.choose_index(5_000, 2048, 1024).factory.startswith("IVF")


def test_an_inverted_index_is_tuned_to_the_recall_goal():
    import faiss

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 64)).astype(np.float32)
    vectors = centres[rng.integers(0, 40, 8000)] + 0.3 * rng.normal(size=(8000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.index_factory(64, "IVF128,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add(vectors)
    queries = vectors[:100]
    truth = index_choice.exact_top([vectors[:3000], vectors[3000:]], queries, 10)
    assert (truth[:, 0] == np.arange(100)).all()  # each query is its own nearest
    nprobe, recall = index_choice.tune_nprobe(index, queries, truth)
    assert recall >= index_choice.RECALL_GOAL and 1 <= nprobe <= 128
    if nprobe > 1:  # one step less breadth misses the goal
        faiss.extract_index_ivf(index).nprobe = nprobe // 2
        assert index_choice.recall_at(index.search(queries, 10)[1], truth) < index_choice.RECALL_GOAL
