"""Rootless-path parsing, root selection and the lexical escape rules (providers.paths)."""

from __future__ import annotations

import ntpath
import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import ConfigError, PathEscapeError, PermanentError
from providers.paths import (
    DEFAULT_ROOT_NAME,
    current_platform,
    is_inside,
    parse_roots,
    safe_join,
    select_root,
    split_rootless,
)

# -- split_rootless ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "root", "parts"),
    [
        ("{root[work]}/a/b.exr", "work", ("a", "b.exr")),
        ("{root[work]}/x.exr", "work", ("x.exr",)),
        ("{root}/a/b.exr", None, ("a", "b.exr")),
        ("{root[my-root_2]}/demo/.hidden", "my-root_2", ("demo", ".hidden")),
        ("{root[work]}/a b/ünï ✓/c..d.exr", "work", ("a b", "ünï ✓", "c..d.exr")),
        ("{root[work]}/..hidden/x", "work", ("..hidden", "x")),
        ("{root[work]}/{literal}/x", "work", ("{literal}", "x")),
    ],
)
def test_split_rootless_accepts_published_paths(path, root, parts):
    assert split_rootless(path) == (root, parts)


@pytest.mark.parametrize(
    "path",
    [
        "{root[work]}/../x",
        "{root[work]}/a/../../x",
        "{root[work]}/a/..",
        "{root[work]}/./x",
        "{root[work]}/.../x",
        "{root[work]}/.. /x",
        "{root[work]}/ ./x",
        "{root[work]}//etc/passwd",
        "{root[work]}///etc/passwd",
        "{root[work]}/a//b",
        "{root[work]}/a/",
        "{root[work]}/",
        "{root[work]}",
        "{root[work]}x/y",
        "{root[work]}../y",
        "{root[work]}\\..\\x",
        "{root[work]}/a\\..\\..\\x",
        "{root[work]}/C:/Windows/x",
        "{root[work]}/c:x",
        "{root[work]}/a/D:",
        "{root[work]}/x.exr:stream",
        "{root[work]}/a\x00b",
        "{root}/../x",
    ],
)
def test_split_rootless_refuses_escapes(path):
    with pytest.raises(PathEscapeError, match="refusing"):
        split_rootless(path)


@pytest.mark.parametrize(
    "path",
    [
        "/mnt/work/x.exr",
        "relative/x.exr",
        "C:/work/x.exr",
        "",
        "{work}/x",
        "{root[]}/x",
        "{root[work]!r}/x",
        "{root[work]:>20}/x",
        "{root[a/b]}/x",
        " {root[work]}/x",
        "prefix{root[work]}/x",
        "{ROOT[work]}/x",
    ],
)
def test_split_rootless_requires_a_root_template(path):
    with pytest.raises(PermanentError, match="not rootless") as caught:
        split_rootless(path)
    assert not isinstance(caught.value, PathEscapeError)


def test_split_rootless_refuses_non_strings():
    with pytest.raises(PermanentError, match="must be a string"):
        split_rootless(b"{root[work]}/x")  # type: ignore[arg-type]


# -- roots -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "key"),
    [
        ("linux", "linux"),
        ("win32", "windows"),
        ("cygwin", "windows"),
        ("darwin", "darwin"),
        ("freebsd13", "linux"),
    ],
)
def test_current_platform_uses_openpype_keys(platform, key):
    assert current_platform(platform) == key


def test_parse_roots_reads_plain_paths():
    roots = parse_roots("studio", {"root": {"work": "/mnt/work/", "renders": "/mnt/r"}})
    assert {name: spec.path for name, spec in roots.items()} == {
        "work": "/mnt/work",
        "renders": "/mnt/r",
    }
    assert all(spec.error is None for spec in roots.values())


def test_parse_roots_picks_the_platform_from_a_multiplatform_root():
    config = {"root": {"work": {"windows": "P:/proj", "linux": "/mnt/proj", "darwin": "/V/p"}}}
    assert parse_roots("s", config, platform="linux")["work"].path == "/mnt/proj"
    assert parse_roots("s", config, platform="darwin")["work"].path == "/V/p"
    windows = parse_roots("s", config, platform="win32", pathmod=ntpath)["work"]
    assert windows.path == "P:\\proj"


def test_parse_roots_keeps_a_missing_platform_as_an_error():
    roots = parse_roots("nas", {"root": {"work": {"windows": "P:/"}}}, platform="linux")
    spec = roots["work"]
    assert spec.path is None
    assert "sites.nas.root.work.linux" in spec.error
    with pytest.raises(PermanentError, match=r"no path for linux"):
        select_root("nas", roots, "work")


@pytest.mark.parametrize("value", ["relative/dir", "", 42, None, "/a\x00b"])
def test_parse_roots_keeps_unusable_paths_as_errors(value):
    spec = parse_roots("s", {"root": {"work": value}})["work"]
    assert spec.path is None and spec.error and "'work'" in spec.error


def test_parse_roots_names_a_plain_string_root_like_ayon():
    roots = parse_roots("s", {"root": "/mnt/only"})
    assert list(roots) == [DEFAULT_ROOT_NAME]
    assert select_root("s", roots, None) == "/mnt/only"
    assert select_root("s", roots, "work") == "/mnt/only"


def test_parse_roots_without_roots_is_empty():
    assert parse_roots("s", {}) == {}


def test_parse_roots_refuses_an_unreadable_shape():
    with pytest.raises(ConfigError) as caught:
        parse_roots("s", {"root": ["/mnt/a"]})
    assert caught.value.key == "sites.s.root"


def test_select_root_names_site_root_and_fix():
    roots = parse_roots("studio", {"root": {"work": "/mnt/w"}})
    with pytest.raises(PermanentError) as caught:
        select_root("studio", roots, "textures")
    message = str(caught.value)
    assert "site 'studio' has no root 'textures' (configured: work)" in message
    assert "add root 'textures' to sites.studio.root" in message


def test_bare_root_needs_exactly_one_root():
    one = parse_roots("s", {"root": {"work": "/w"}})
    two = parse_roots("s", {"root": {"work": "/w", "other": "/o"}})
    assert select_root("s", one, None) == "/w"
    with pytest.raises(PermanentError, match=r"has 2 roots"):
        select_root("s", two, None)
    with pytest.raises(PermanentError, match=r"has 0 roots"):
        select_root("s", {}, None)


# -- joining -----------------------------------------------------------------------------------


def test_safe_join_posix():
    assert safe_join("/mnt/w", ("a", "b.exr")) == "/mnt/w/a/b.exr"


def test_safe_join_windows_flavour():
    assert safe_join("P:\\proj", ("a", "b.exr"), ntpath) == "P:\\proj\\a\\b.exr"


@pytest.mark.parametrize("part", ["x.", "x ", "x. ."])
def test_safe_join_refuses_names_windows_would_alias(part):
    with pytest.raises(PathEscapeError, match="Windows drops"):
        safe_join("P:\\proj", ("a", part), ntpath)
    assert safe_join("/mnt", ("a", part)) == f"/mnt/a/{part}"


@pytest.mark.parametrize("parts", [(), ("..",), ("a", ".."), ("/etc",), ("",), ("C:",), ("a/b",)])
def test_safe_join_revalidates_parts(parts):
    with pytest.raises(PathEscapeError):
        safe_join("/mnt/w", parts)


@pytest.mark.parametrize("part", ["../x", "a/../b", "a/b"])
def test_safe_join_refuses_separator_inside_a_part(part):
    # A caller that built its own parts must not smuggle a path in as one component.
    with pytest.raises(PathEscapeError, match="separator"):
        safe_join("/mnt/w", ("ok", part))


@pytest.mark.parametrize(
    ("root", "path", "inside", "mod"),
    [
        ("/mnt/work", "/mnt/work/a", True, posixpath),
        ("/mnt/work", "/mnt/work", True, posixpath),
        ("/mnt/work", "/mnt/work2/a", False, posixpath),
        ("/mnt/work", "/mnt/a", False, posixpath),
        ("/mnt/work/", "/mnt/work/a/../../x", False, posixpath),
        ("/", "/anything", True, posixpath),
        ("P:\\Proj", "p:\\proj\\a", True, ntpath),
        ("P:\\proj", "Q:\\proj\\a", False, ntpath),
    ],
)
def test_is_inside(root, path, inside, mod):
    assert is_inside(root, path, mod) is inside


# -- property: nothing that parses can leave the root -------------------------------------------

_alphabet = st.sampled_from([*"ab./\\: \x00C~", "..", "ü", "{", "}"])


@given(st.lists(_alphabet, max_size=12).map("".join))
def test_anything_accepted_stays_under_the_root(suffix):
    path = "{root[work]}/" + suffix
    try:
        _, parts = split_rootless(path)
    except PathEscapeError:
        return
    for root, mod in (("/mnt/work", posixpath), ("P:\\work", ntpath)):
        try:
            joined = safe_join(root, parts, mod)
        except PathEscapeError:
            assert mod is ntpath  # only Windows aliasing (trailing dot/space) is refused
            continue
        # Accepted paths are canonical: normalising changes nothing, so no `..` survived.
        assert mod.normpath(joined) == joined
        assert is_inside(root, joined, mod)
        assert joined != root
