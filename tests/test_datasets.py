"""Named datasets: manifests, download through a real HTTP server on 127.0.0.1, checksums, resume, offline."""
from __future__ import annotations

import dataclasses
import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch

from nasden.cli import main
from nasden.data import datasets
from nasden.data.datasets import DatasetError, Manifest, copy_from, download, manifest_for
from nasden.data.image_sets import load_set
from nasden.data.images import save_image


@pytest.fixture
def upstream(tmp_path) -> tuple[Path, Manifest]:
    """A made-up dataset: three small PNGs in a folder laid out as upstream, and its manifest."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    for index in range(3):
        save_image(torch.rand(1, 16, 16 + index), folder / f"img{index}.png")
    data = manifest_for(folder, "tiny", description="test images", repository="example/tiny", commit="0" * 40,
                        path="images", licence="public domain", citation="none")
    return folder, data


class Server:
    """``http.server`` on 127.0.0.1 serving ``folder``; ``broken`` names files it cuts off after 10 bytes and
    ``requests`` counts what was asked for."""

    def __init__(self, folder: Path):
        self.broken: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                name = self.path.lstrip("/")
                server.requests.append(name)
                if name in server.broken:
                    body = (folder / name).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:10])  # then the connection drops
                    return
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(upstream):
    served = Server(upstream[0])
    yield served
    served.close()


def test_download_checks_every_file_then_moves_the_folder_into_place(tmp_path, upstream, server) -> None:
    folder, data = upstream
    target = download(data, tmp_path / "cache", server.url)
    assert target == tmp_path / "cache" / "tiny"
    assert sorted(p.name for p in target.iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert all((target / f.name).read_bytes() == (folder / f.upstream).read_bytes() for f in data.files)
    assert not (tmp_path / "cache" / ".nasden-tmp-tiny").exists()
    assert len(load_set(str(target), 1).clean) == 3


def test_an_interrupted_download_resumes_with_the_files_it_checked(tmp_path, upstream, server) -> None:
    _, data = upstream
    server.broken.add("img1.png")
    with pytest.raises(DatasetError, match="img1.png"):
        download(data, tmp_path / "cache", server.url)
    partial = tmp_path / "cache" / ".nasden-tmp-tiny"
    assert (partial / "img0.png").is_file() and not (tmp_path / "cache" / "tiny").exists()
    server.broken.clear()
    server.requests.clear()
    download(data, tmp_path / "cache", server.url)
    assert server.requests == ["img1.png", "img2.png"]  # img0 was checked and kept
    assert (tmp_path / "cache" / "tiny" / "img2.png").is_file() and not partial.exists()


def test_a_checksum_mismatch_names_the_file_and_keeps_the_good_ones(tmp_path, upstream, server) -> None:
    folder, data = upstream
    (folder / "img2.png").write_bytes(b"not the image the manifest pinned")
    with pytest.raises(DatasetError, match=r"tiny: img2.png arrived with SHA-256 .* it was deleted \(the 2 good"):
        download(data, tmp_path / "cache", server.url)
    partial = tmp_path / "cache" / ".nasden-tmp-tiny"
    assert sorted(p.name for p in partial.iterdir()) == ["img0.png", "img1.png"]


def test_offline_is_one_line_with_both_ways_out(tmp_path, upstream) -> None:
    _, data = upstream
    with pytest.raises(DatasetError) as caught:
        download(data, tmp_path / "cache", "http://127.0.0.1:9", timeout=5)  # the discard port: nobody listens
    message = str(caught.value)
    assert "\n" not in message and "cannot download http://127.0.0.1:9/img0.png" in message
    assert "nasden data get tiny --from DIR" in message and "$NASDEN_DATA" in message


def test_copy_from_a_folder_checks_the_files(tmp_path, upstream) -> None:
    folder, data = upstream
    assert sorted(p.name for p in copy_from(data, folder, tmp_path / "cache").iterdir())[0] == "img0.png"
    (folder / "img0.png").unlink()
    with pytest.raises(DatasetError, match="has no img0.png"):
        copy_from(data, folder, tmp_path / "other")


def test_names_resolve_from_nasden_data_then_the_cache(tmp_path, monkeypatch) -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (shared / "set12").is_dir():
        pytest.skip("../shared/data is not beside the repository")
    monkeypatch.setenv("NASDEN_DATA", str(shared))
    monkeypatch.setenv("NASDEN_CACHE", str(tmp_path / "cache"))
    for name in ("set12", "bsd68", "train400", "cbsd68", "polyu"):  # polyu is real_polyu there
        assert datasets.find(name) is not None, name
    assert len(load_set("set12", 1).clean) == 12
    monkeypatch.setenv("NASDEN_DATA", str(tmp_path / "empty"))
    assert main(["data", "get", "set12", "--from", str(shared / "set12")]) == 0
    assert datasets.find("set12") == tmp_path / "cache" / "set12"


def test_every_manifest_pins_a_commit_and_checksums(tmp_path) -> None:
    for name in datasets.names():
        data = datasets.manifest(name)
        assert len(data.commit) == 40 and data.licence and data.citation and data.files, name
        assert all(len(f.sha256) == 64 and f.size > 0 for f in data.files), name
    assert {"train400", "set12", "bsd68", "cbsd68", "kodak24", "mcmaster", "polyu"} <= set(datasets.names())
    assert datasets.manifest("set12").url(datasets.manifest("set12").files[0]).startswith(
        "https://raw.githubusercontent.com/cszn/DnCNN/e93b27812d3ff523a3a79d19e5e50d233d7a8d0a/testsets/Set12/")


def test_an_unknown_name_lists_the_known_ones(capsys) -> None:
    assert main(["data", "get", "imagenet"]) == 2
    assert "unknown dataset 'imagenet'; known: bsd68, cbsd68" in capsys.readouterr().err


def test_polyu_splits_are_scene_disjoint_and_cover_every_pair() -> None:
    data = datasets.manifest("polyu")
    pairs = {f.name.split("/", 1)[1] for f in data.files if f.name.startswith("clean/")}
    splits = {name: set(names) for name, names in data.splits.items()}
    assert set(splits) == {"train", "val", "test"} and "scene-disjoint" in data.split_rule
    assert set().union(*splits.values()) == pairs and sum(map(len, splits.values())) == len(pairs) == 100

    def scene(name: str) -> str:
        return name.rsplit(".", 1)[0].rstrip("0123456789").rstrip("_").rsplit("_", 1)[1].lower()

    scenes = {name: {scene(n) for n in names} for name, names in splits.items()}
    assert not scenes["train"] & scenes["test"] and not scenes["val"] & (scenes["train"] | scenes["test"])
    assert len(splits["test"]) == 31 and {n.split("_")[0] for n in splits["test"]} == {
        n.split("_")[0] for n in pairs}  # every camera is tested


def test_a_split_loads_only_its_images_and_an_unknown_one_lists_the_splits(tmp_path, upstream, monkeypatch) -> None:
    folder, data = upstream
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    split = dataclasses.replace(data, splits={"a": ("img0.png", "img2.png"), "b": ("img1.png",)})
    (manifests / "tiny.json").write_text(split.to_json())
    monkeypatch.setattr(datasets, "MANIFESTS", manifests)
    monkeypatch.setenv("NASDEN_DATA", str(tmp_path))
    (tmp_path / "tiny").symlink_to(folder)
    assert load_set("tiny:a", 1).names == ["img0.png", "img2.png"]
    assert load_set("tiny", 1).names == ["img0.png", "img1.png", "img2.png"]
    assert datasets.split_source("other:a") == ("other:a", None)  # not a dataset: a path with a colon
    with pytest.raises(DatasetError, match="dataset 'tiny' has no split 'c'; its splits: tiny:a, tiny:b"):
        load_set("tiny:c", 1)
