"""Collections: BEIR conversion, ir_datasets, and error messages that name file and line."""

import logging
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import SHARED, write_beir
from zelo_ray.data import DataError, open_collection, prepare, resolve_source

DOCS = [{"_id": "d1", "title": "Wings", "text": "lift of a wing"}, {"_id": 2, "text": "drag"},
        {"_id": "d3", "title": "", "text": "  "}]
QUERIES = [{"_id": "q1", "text": "wing lift"}, {"_id": "q2", "text": "drag"}]


@pytest.mark.parametrize("gz", [False, True])
def test_beir_roundtrip(tmp_path, gz):
    src = write_beir(tmp_path / "c", DOCS, QUERIES, [("q1", "d1", 2), ("q2", "2", 1)], gz=gz)
    col = prepare(str(src), tmp_path / "out")
    t = pq.read_table(col.corpus_path)
    assert t["row"].to_pylist() == [0, 1, 2]
    assert t["doc_id"].to_pylist() == ["d1", "2", "d3"]  # integer ids become strings
    assert t["empty"].to_pylist() == [False, False, True]  # kept, flagged
    assert col.qrels("test") == {"q1": {"d1": 2}, "q2": {"2": 1}}
    assert col.manifest["counts"]["empty_docs"] == 1
    assert any("empty documents" in w for w in col.manifest["warnings"])
    assert prepare(str(src), tmp_path / "out").manifest == col.manifest  # cached
    assert open_collection(tmp_path / "out").n_docs == 3


def test_malformed_json_names_file_and_line(tmp_path):
    src = write_beir(tmp_path / "c", [DOCS[0], '{"_id": "x", "text": ', DOCS[1]], QUERIES)
    with pytest.raises(DataError, match=r"corpus\.jsonl:2: malformed JSON"):
        prepare(str(src), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_missing_id_and_bad_field(tmp_path):
    src = write_beir(tmp_path / "c", [DOCS[0], {"text": "no id"}], QUERIES)
    with pytest.raises(DataError, match=r"corpus\.jsonl:2: missing '_id'"):
        prepare(str(src), tmp_path / "out")
    src = write_beir(tmp_path / "d", [{"_id": "a", "text": 5}], QUERIES)
    with pytest.raises(DataError, match=r"corpus\.jsonl:1: field 'text' must be a string"):
        prepare(str(src), tmp_path / "out2")


def test_duplicate_id_names_both_lines(tmp_path):
    src = write_beir(tmp_path / "c", [DOCS[0], DOCS[1], {"_id": "d1", "text": "again"}], QUERIES)
    with pytest.raises(DataError, match=r"corpus\.jsonl:3: duplicate document id 'd1' \(first at .*corpus\.jsonl:1\)"):
        prepare(str(src), tmp_path / "out")


def test_qrels_unknown_ids_warn_with_counts(tmp_path, caplog):
    src = write_beir(tmp_path / "c", DOCS, QUERIES, [("q1", "d1", 1), ("q1", "nope", 1), ("q9", "zz", 1)])
    with caplog.at_level(logging.WARNING):
        col = prepare(str(src), tmp_path / "out")
    w = " ".join(col.manifest["warnings"])
    assert "2 unknown document ids" in w and "'nope'" in w and "1 unknown query ids" in w
    assert "unknown document ids" in caplog.text
    assert col.manifest["counts"]["qrels"]["test"]["rows"] == 3  # kept: they count against recall


def test_bad_qrels_line(tmp_path):
    src = write_beir(tmp_path / "c", DOCS, QUERIES)
    (src / "qrels").mkdir()
    (src / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(DataError, match=r"test\.tsv:2: expected 3 columns"):
        prepare(str(src), tmp_path / "out")


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(DataError, match="not a BEIR folder"):
        resolve_source("no-such-collection-xyz")
    src = write_beir(tmp_path / "c", DOCS, QUERIES)
    col = prepare(str(src), tmp_path / "out")
    with pytest.raises(DataError, match="no qrels split 'test'"):
        col.qrels("test")


def test_shared_collection_by_name():
    src = resolve_source("cranfield")
    assert src.kind == "beir" and src.location.endswith("cranfield")


def test_irds_cranfield_gains_match_shared_beir_copy(tmp_path):
    """ir_datasets passes Cleverdon's codes through (1 = best); we map them to gains."""
    assert Path(os.environ["IR_DATASETS_HOME"]) == SHARED / "ir_datasets"  # conftest: offline copy
    irds = prepare("irds:cranfield", tmp_path / "irds")
    beir = prepare("cranfield", tmp_path / "beir")
    assert irds.n_docs == beir.n_docs == 1400
    assert irds.qrels("test") == beir.qrels("test")
    assert beir.qrels("test")["1"]["184"] == 3  # code 2 ("useful") -> gain 3
