"""common/imdb.py unit by unit: finding the reviews, the download (faked), extraction into the cache,
reading one review file, and the review set's sample and subset."""

import hashlib
import io
import json
import os
import tarfile
import urllib.error

import pytest
import torch

import common.imdb as imdb
from common.errors import DataNotFoundError, UserError
from common.imdb import Reviews, find_imdb, load_imdb, read_review_file
from tests.conftest import FakeResponse


def pack(path, members: dict[str, bytes], mode: int = 0o644) -> None:
    """A .tar.gz at `path` holding `members` (name -> bytes) as plain files."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))


REVIEWS = {"aclImdb/train/neg/0_1.txt": b"bad", "aclImdb/train/pos/0_9.txt": b"good film"}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --- finding the reviews ------------------------------------------------------------------------------
@pytest.mark.parametrize("present, missing", [("neg", "pos"), ("pos", "neg")])
def test_a_folder_with_either_label_is_taken_as_the_aclimdb_folder(tmp_path, present, missing):
    (tmp_path / "train" / present).mkdir(parents=True)
    (tmp_path / "train" / present / "1_1.txt").write_text("a review")
    with pytest.raises(UserError, match=rf"^{tmp_path}/train/{missing}: missing; an aclImdb folder holds train/neg "
                                        r"and train/pos$"):
        load_imdb(tmp_path, "train", download=False)


def test_without_reviews_the_error_says_where_it_looked_and_whether_a_download_was_tried(tmp_path, monkeypatch):
    tried = []
    monkeypatch.setattr(imdb, "_download", lambda folder: tried.append(folder) or "no network")
    hint = (f"Download aclImdb_v1.tar.gz by hand and put it (or the aclImdb folder it holds) in {tmp_path}, or point "
            "--data-dir (or $CSE849_DATA) at the folder holding it.")
    with pytest.raises(DataNotFoundError) as err:
        load_imdb(tmp_path, "test")  # downloads by default
    assert str(err.value) == (f"IMDB test split not found: looked for {tmp_path}/aclImdb/test or {tmp_path}/aclImdb*.tar.gz"
                              f"; the download from {imdb.URL} failed (no network). {hint}")
    assert tried == [tmp_path]
    with pytest.raises(DataNotFoundError) as err:
        load_imdb(tmp_path, "test", download=False)
    assert str(err.value) == f"IMDB test split not found: looked for {tmp_path}/aclImdb/test or {tmp_path}/aclImdb*.tar.gz. {hint}"
    assert tried == [tmp_path]  # not tried again


def test_archives_that_lack_the_split_are_named_and_no_download_is_tried(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(imdb, "_download", lambda folder: pytest.fail("downloaded"))
    pack(tmp_path / "aclImdb_a.tar.gz", REVIEWS)
    pack(tmp_path / "aclImdb_b.tar.gz", {"aclImdb/train/neg/1_1.txt": b"awful"})
    with pytest.raises(DataNotFoundError, match=rf"^IMDB test split not found: looked for {tmp_path}/aclImdb/test and "
                                                 rf"{tmp_path}/aclImdb_a.tar.gz, {tmp_path}/aclImdb_b.tar.gz\. Download "):
        find_imdb(tmp_path, "test")


def test_after_a_download_the_reviews_are_looked_for_once_more_without_downloading(tmp_path, monkeypatch):
    def place(folder):
        for label in ("neg", "pos"):
            (folder / "aclImdb" / "train" / label).mkdir(parents=True)
        return None
    monkeypatch.setattr(imdb, "_download", place)
    assert find_imdb(tmp_path, "train") == tmp_path / "aclImdb"
    calls = []
    monkeypatch.setattr(imdb, "_download", lambda folder: calls.append(folder))  # "succeeds", places nothing
    with pytest.raises(DataNotFoundError, match="IMDB test split not found"):
        find_imdb(tmp_path, "test")
    assert calls == [tmp_path]


def test_split_names_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match=r"^unknown IMDB split 'dev'; expected one of \('train', 'test'\)$"):
        load_imdb(tmp_path, "dev")
    for label in ("neg", "pos"):
        (tmp_path / "aclImdb" / "train" / label).mkdir(parents=True)
    with pytest.raises(UserError, match=rf"^{tmp_path}/aclImdb/train/neg: holds no \.txt reviews$"):
        load_imdb(tmp_path, "train", download=False)


def test_reviews_without_numeric_ids_are_grouped_by_their_position(tmp_path):
    for label in ("neg", "pos"):
        folder = tmp_path / "aclImdb" / "train" / label
        folder.mkdir(parents=True)
        for name in ("a.txt", "b.txt", "260_1.txt"):
            (folder / name).write_text(f"{label} {name}")
    reviews = load_imdb(tmp_path, "train", download=False)
    assert reviews.groups.tolist() == [1, 0, 0, 10**9 + 1, 10**9, 10**9]  # 260 // 250; positions 1 and 2 // 250
    assert reviews.labels.tolist() == [0, 0, 0, 1, 1, 1] and reviews.texts[0] == "neg 260_1.txt"


def test_a_sample_is_a_fixed_random_subset_and_the_whole_set_when_it_asks_for_all(tmp_path):
    reviews = Reviews([f"r{i}" for i in range(10)], torch.arange(10) % 2, torch.arange(10) // 3)
    assert reviews.sample(10) is reviews and reviews.sample(None) is reviews
    picked = torch.randperm(10, generator=torch.Generator().manual_seed(0))[:4]
    sample = reviews.sample(4)
    assert sample.texts == [f"r{i}" for i in picked.tolist()]
    assert sample.labels.tolist() == (picked % 2).tolist() and sample.groups.tolist() == (picked // 3).tolist()


# --- the download -------------------------------------------------------------------------------------
def fake_download(monkeypatch, body: bytes, length: int | None, fail_after: int | None = None) -> tuple[list, list]:
    opened, reads = [], []
    monkeypatch.setattr(imdb, "SHA256", hashlib.sha256(body).hexdigest())
    monkeypatch.setattr(imdb.urllib.request, "urlopen", lambda url, timeout: opened.append((url, timeout)) or
                        FakeResponse(body, length, reads, fail_after))
    return opened, reads


@pytest.mark.parametrize("length", ["exact", None])
def test_a_download_is_read_in_mebibytes_checked_and_renamed_into_place(tmp_path, monkeypatch, capsys, length):
    body = os.urandom(2 * (1 << 20) + 5)
    opened, reads = fake_download(monkeypatch, body, len(body) if length else None)
    folder = tmp_path / "new" / "data"
    assert imdb._download(folder) is None
    target = folder / "aclImdb_v1.tar.gz"
    assert target.read_bytes() == body and sorted(os.listdir(folder)) == ["aclImdb_v1.tar.gz"]
    assert opened == [(imdb.URL, 60)] and reads == [1 << 20] * 4
    assert capsys.readouterr().out == f"downloading {imdb.URL} to {target} ...\n"


@pytest.mark.parametrize("length", [0, 3])
def test_a_download_of_the_wrong_length_is_refused_and_leaves_nothing(tmp_path, monkeypatch, length):
    body = b"abcd"
    fake_download(monkeypatch, body, length)
    folder = tmp_path / "data"
    with pytest.raises(UserError) as err:
        imdb._download(folder)
    digest = hashlib.sha256(body).hexdigest()
    assert str(err.value) == (f"the download from {imdb.URL} is not the IMDB archive (4 bytes, SHA256 {digest[:12]}..., "
                              f"expected {digest[:12]}...; a proxy or login page?); it was deleted. Download it by "
                              "hand into the data folder")
    assert not folder.exists()  # made for the download, so removed with it


def test_a_download_that_fails_part_way_says_why_and_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    fake_download(monkeypatch, os.urandom(3 << 20), 3 << 20, fail_after=1)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "HW0_data.pt").write_text("kept")
    assert imdb._download(tmp_path / "data") == "Connection reset by peer"
    assert os.listdir(tmp_path / "data") == ["HW0_data.pt"]  # the .part is gone, the folder and its files stay
    assert imdb._download(tmp_path / "fresh") == "Connection reset by peer" and not (tmp_path / "fresh").exists()
    monkeypatch.setattr(imdb.urllib.request, "urlopen", lambda url, timeout: (_ for _ in ()).throw(
        urllib.error.URLError("no route to host")))
    assert imdb._download(tmp_path / "data") == "no route to host"
    monkeypatch.setattr(imdb.urllib.request, "urlopen", lambda url, timeout: (_ for _ in ()).throw(OSError("odd")))
    assert imdb._download(tmp_path / "data") == "odd"


# --- extraction ---------------------------------------------------------------------------------------
def test_an_archive_is_extracted_once_per_content_with_its_manifest(tmp_path, cache, monkeypatch):
    pack(tmp_path / "a.tar.gz", REVIEWS)
    pack(tmp_path / "b.tar.gz", {**REVIEWS, "aclImdb/train/neg/1_1.txt": b"worse"})
    first, second = imdb._extract(tmp_path / "a.tar.gz"), imdb._extract(tmp_path / "b.tar.gz")
    assert first != second and first.name == "aclImdb"  # other bytes, another folder
    assert json.loads((first.parent / ".complete").read_text()) == {name: len(data) for name, data in REVIEWS.items()}
    stale = first / "train" / "neg" / "0_1.txt"
    stale.write_text("a tampered review of another size")
    (first / "train" / "neg" / "planted.txt").write_text("not from the archive")
    assert (imdb._extract(tmp_path / "a.tar.gz") / "train" / "neg" / "0_1.txt").read_bytes() == b"bad"
    assert not (first / "train" / "neg" / "planted.txt").exists()  # the stale folder was cleared first
    monkeypatch.setattr(imdb.tarfile, "open", lambda *a, **k: pytest.fail("extracted again"))
    assert imdb._extract(tmp_path / "a.tar.gz") == first  # the manifest matches: used as it is


def test_a_manifest_must_match_every_size_and_the_count_of_reviews(tmp_path, cache):
    pack(tmp_path / "a.tar.gz", REVIEWS)
    folder = imdb._extract(tmp_path / "a.tar.gz")
    manifest = folder.parent / ".complete"
    assert imdb._matches_manifest(folder.parent, manifest)
    (folder / "train" / "pos" / "0_9.txt").write_text("good flim")  # same size: still matches
    assert imdb._matches_manifest(folder.parent, manifest)
    (folder / "train" / "pos" / "0_9.txt").write_text("good")
    assert not imdb._matches_manifest(folder.parent, manifest)
    (folder / "train" / "pos" / "0_9.txt").write_text("good film")
    (folder / "train" / "pos" / "1_9.txt").write_text("extra")
    assert not imdb._matches_manifest(folder.parent, manifest)


def test_extraction_strips_special_permission_bits(tmp_path, cache):
    pack(tmp_path / "a.tar.gz", REVIEWS, mode=0o4755)
    review = imdb._extract(tmp_path / "a.tar.gz") / "train" / "neg" / "0_1.txt"
    assert review.stat().st_mode & 0o7000 == 0  # the data filter drops set-uid


def test_an_archive_member_that_is_a_special_file_or_over_a_cap_is_refused(tmp_path, cache, monkeypatch):
    with tarfile.open(tmp_path / "fifo.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("aclImdb/train/neg/0_1.txt")
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    with pytest.raises(UserError, match=r"fifo.tar.gz: aclImdb/train/neg/0_1.txt is a special file, where a review "
                                        r"file belongs; refused \(an aclImdb archive holds only plain files there\)$"):
        imdb._extract(tmp_path / "fifo.tar.gz")
    monkeypatch.setattr(imdb, "MAX_REVIEW_BYTES", 4_000_000)
    monkeypatch.setattr(imdb, "MAX_EXTRACTED_BYTES", 8_000_000)
    pack(tmp_path / "at_caps.tar.gz", {"aclImdb/train/neg/0_1.txt": bytes(4_000_000),
                                       "aclImdb/train/pos/0_9.txt": bytes(4_000_000)})
    assert imdb._extract(tmp_path / "at_caps.tar.gz").is_dir()  # exactly at both caps: accepted
    pack(tmp_path / "big.tar.gz", {"aclImdb/train/neg/0_1.txt": bytes(5_500_004)})
    with pytest.raises(UserError, match=r"big.tar.gz: aclImdb/train/neg/0_1.txt is 6 MB; a review is under 4 MB, so "
                                        r"the archive is refused$"):
        imdb._extract(tmp_path / "big.tar.gz")
    pack(tmp_path / "many.tar.gz", {f"aclImdb/train/neg/{i}_1.txt": bytes(2_833_335) for i in range(3)})
    with pytest.raises(UserError, match=r"many.tar.gz: its reviews add up to 9 MB, over the 8 MB an aclImdb archive "
                                        r"needs; refused$"):
        imdb._extract(tmp_path / "many.tar.gz")
    assert [p.name for p in cache.iterdir()] == [imdb._extract(tmp_path / "at_caps.tar.gz").parent.name]
    monkeypatch.setattr(imdb, "MAX_REVIEW_BYTES", 999_999)  # the cap as written: every digit of it
    pack(tmp_path / "one.tar.gz", {"aclImdb/train/neg/0_1.txt": bytes(1_000_000)})
    with pytest.raises(UserError, match=r"0_1.txt is 1 MB; a review is under 0.999999 MB, so the archive is refused$"):
        imdb._extract(tmp_path / "one.tar.gz")


def test_a_corrupt_or_unreadable_archive_leaves_no_partial_extraction(tmp_path, cache, monkeypatch):
    pack(tmp_path / "a.tar.gz", {**REVIEWS, "aclImdb/train/neg/1_1.txt": os.urandom(200_000)})
    data = (tmp_path / "a.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match=r"cut.tar.gz: not a readable .tar.gz archive"):
        imdb._extract(tmp_path / "cut.tar.gz")
    assert list(cache.iterdir()) == []
    def full_disk(self, path, members, filter):
        (path / "aclImdb").mkdir(parents=True)
        (path / "aclImdb" / "partial.txt").write_text("half")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tarfile.TarFile, "extractall", full_disk)
    pack(tmp_path / "b.tar.gz", REVIEWS)
    with pytest.raises(UserError, match=r"b.tar.gz: not a readable .tar.gz archive \(\[Errno 28\] No space left"):
        imdb._extract(tmp_path / "b.tar.gz")
    assert list(cache.iterdir()) == []  # the half-written folder is removed
    (tmp_path / "folder.tar.gz").mkdir()
    with pytest.raises(UserError, match=r"folder.tar.gz: cannot read \(Is a directory\)$"):
        imdb._extract(tmp_path / "folder.tar.gz")


# --- one review file ----------------------------------------------------------------------------------
def test_a_review_file_is_read_up_to_its_cap_and_refused_beyond(tmp_path, monkeypatch):
    monkeypatch.setattr(imdb, "MAX_REVIEW_BYTES", 2_000_000)
    (tmp_path / "at_cap.txt").write_text("a" * 2_000_000)
    assert len(read_review_file(tmp_path / "at_cap.txt")) == 2_000_000
    (tmp_path / "over.txt").write_text("a" * 2_000_001)
    with pytest.raises(UserError, match=r"over.txt: over 2 MB; a review file must be smaller$"):
        read_review_file(tmp_path / "over.txt")
    (tmp_path / "nul.txt").write_bytes(b"a\0b")
    with pytest.raises(UserError, match=r"nul.txt: not a text file \(it holds NUL bytes\); give a plain-text review$"):
        read_review_file(tmp_path / "nul.txt")
    with pytest.raises(UserError, match=rf"^{tmp_path}: a folder, not a review file$"):
        read_review_file(tmp_path)
    with pytest.raises(UserError, match=r"missing.txt: cannot read \(No such file or directory\)$"):
        read_review_file(tmp_path / "missing.txt")
    (tmp_path / "bom.txt").write_bytes("\ufeffcafé".encode("utf-8"))
    assert read_review_file(tmp_path / "bom.txt") == "café"
