from __future__ import annotations

import pytest

from dockyard.domain.errors import BadRequest
from dockyard.domain.images import ImageReference, parse_image_reference

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("app", None, "app", None, None),
        ("app:v1", None, "app", "v1", None),
        ("team/app", None, "team/app", None, None),
        ("team/app:1.0", None, "team/app", "1.0", None),
        ("a/b/c/d", None, "a/b/c/d", None, None),
        ("my_app-2.x/sub__x:V_1.2-rc", None, "my_app-2.x/sub__x", "V_1.2-rc", None),
        ("myregistry.azurecr.io/my-agent:v1", "myregistry.azurecr.io", "my-agent", "v1", None),
        ("registry.example.com:5000/team/app:2", "registry.example.com:5000", "team/app", "2", None),
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/x:tag", "localhost:5000", "x", "tag", None),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", None, None),
        ("[::1]:5000/x:t", "[::1]:5000", "x", "t", None),
        ("Registry.Example.COM/app", "Registry.Example.COM", "app", None, None),
        (f"app@{DIGEST}", None, "app", None, DIGEST),
        (f"localhost:5000/x@{DIGEST}", "localhost:5000", "x", None, DIGEST),
        (f"localhost:5000/x:v1@{DIGEST}", "localhost:5000", "x", "v1", DIGEST),
    ],
)
def test_parse_image_reference(
    text: str, registry: str | None, repository: str, tag: str | None, digest: str | None
) -> None:
    reference = parse_image_reference(text)
    assert reference == ImageReference(registry=registry, repository=repository, tag=tag, digest=digest)
    assert str(reference) == text


@pytest.mark.parametrize(
    ("text", "name"),
    [("team/app:v1", "team/app"), ("localhost:5000/x:tag", "localhost:5000/x"), ("app", "app")],
)
def test_name_joins_registry_and_repository(text: str, name: str) -> None:
    assert parse_image_reference(text).name == name


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "App",
        "team/App:v1",
        "localhost:5000/MyApp",
        "repo:",
        "repo@",
        "repo:v1@",
        ":v1",
        "/app",
        "app/",
        "team//app",
        "my app",
        "app:v 1",
        " app",
        "app ",
        "-app",
        "app-",
        "app:-v1",
        "app:" + "t" * 129,
        "app@sha256:1234",  # digest too short
        "app@sha256:" + "g" * 64,  # not hex
        "localhost:port/app",
        "https://registry.example.com/app",
        "registry.example.com/" + "a" * 250,  # name over 255 characters
        "a/" * 127 + "bc",  # 256 characters without a registry
    ],
)
def test_invalid_image_references(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_image_reference(text)
    error = info.value
    assert error.code == "InvalidContainerImage"
    assert error.status_code == 400
    assert error.param == "definition.image"
    assert repr(text) in error.message
    assert "myregistry.azurecr.io/my-agent:v1" in error.message  # says what a good one looks like


@pytest.mark.parametrize("text", [None, 5, ["app"]])
def test_non_string_image(text: object) -> None:
    with pytest.raises(BadRequest) as info:
        parse_image_reference(text)  # type: ignore[arg-type]
    assert info.value.code == "InvalidContainerImage"


def test_longest_allowed_name() -> None:
    text = "a/" * 126 + "abc"  # 255 characters
    assert len(text) == 255
    assert parse_image_reference(text).repository == text


def test_longest_allowed_tag() -> None:
    tag = "t" * 128
    assert parse_image_reference(f"app:{tag}").tag == tag


@pytest.mark.parametrize(
    ("text", "floating"),
    [
        ("app", True),
        ("app:latest", True),
        ("localhost:5000/x", True),
        ("app:v1", False),
        ("app:Latest", False),
        (f"app@{DIGEST}", False),
        (f"app:latest@{DIGEST}", False),
    ],
)
def test_is_floating(text: str, floating: bool) -> None:
    assert parse_image_reference(text).is_floating is floating


@pytest.mark.parametrize("text", ["Team/app", "Team/app:v1"])
def test_uppercase_first_component_without_registry_is_rejected(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_image_reference(text)


def test_trailing_newline_is_rejected() -> None:
    with pytest.raises(BadRequest):
        parse_image_reference("app:v1\n")


def test_non_ascii_tag_is_rejected() -> None:
    with pytest.raises(BadRequest):
        parse_image_reference("app:tåg")
