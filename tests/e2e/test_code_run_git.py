"""code-run of compiled languages (raw HTTP: the Python SDK only sends python, typescript and
javascript) and the git methods that used to answer 501 (reset, restore, remotes, config,
configure_user, dangerously_authenticate), through the real SDK inside a real sandbox."""

from __future__ import annotations

import httpx
import pytest
from daytona import DaytonaConflictError, DaytonaError, DaytonaNotFoundError, DaytonaValidationError

import support
from support import sh

RUN = support.short_id()

pytestmark = pytest.mark.timeout(300)

PROGRAMS = {
    "c": (
        ("gcc", "cc", "clang"),
        r"""#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) { printf("%s [%s]\n", getenv("GREETING"), argv[1]); return 3; }""",
    ),
    "cpp": (
        ("g++", "c++", "clang++"),
        r"""#include <iostream>
#include <cstdlib>
int main(int argc, char **argv) { std::cout << std::getenv("GREETING") << " [" << argv[1] << "]" << std::endl; return 3; }""",
    ),
    "java": (
        ("javac",),
        r"""class Anything { public static void main(String[] a) {
  System.out.println(System.getenv("GREETING") + " [" + a[0] + "]"); System.exit(3); } }""",
    ),
    "go": (
        ("go",),
        'package main\nimport ("fmt"; "os")\nfunc main() { fmt.Printf("%s [%s]\\n", os.Getenv("GREETING"), os.Args[1]); os.Exit(3) }\n',
    ),
    "rust": (
        ("rustc",),
        'fn main() { let a: Vec<String> = std::env::args().collect(); println!("{} [{}]", std::env::var("GREETING").unwrap(), a[1]); std::process::exit(3); }\n',
    ),
    "bash": ((), 'echo "$GREETING [$1]"; exit 3'),
}


@pytest.fixture(scope="module")
def sb(module_sandboxes):
    return module_sandboxes()


def code_run(server, sb, language: str, code: str, **extra) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    base = server.api_url.rsplit("/api", 1)[0]
    body = {"code": code, "language": language, **extra}
    with httpx.Client(timeout=120) as c:
        return c.post(f"{base}/toolbox/{sb.id}/process/code-run", json=body, headers=headers)


@pytest.mark.sessions
@pytest.mark.parametrize("language", list(PROGRAMS))
def test_code_run_compiled_languages(server, sb, language):
    tools, code = PROGRAMS[language]
    installed = not tools or sh(sb, "command -v " + " || command -v ".join(tools))[0] == 0
    r = code_run(server, sb, language, code, argv=["x y"], envs={"GREETING": "hi"})
    if not installed:
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["source"] == "DAYTONA_DAEMON" and tools[0] in body["message"], body
        return
    assert r.status_code == 200, r.text
    assert (r.json()["exitCode"], r.json()["result"]) == (3, "hi [x y]\n"), r.json()
    # Nothing of the build is left in the sandbox's /tmp.
    assert sh(sb, "ls -d /tmp/sandbar-code-run-* 2>/dev/null | wc -l")[1].strip() == "0"


@pytest.mark.sessions
def test_code_run_compile_errors_and_unknown_languages(server, sb):
    if sh(sb, "command -v gcc || command -v cc")[0] == 0:
        r = code_run(server, sb, "c", "int main( {")
        assert r.status_code == 200 and r.json()["exitCode"] != 0 and "error" in r.json()["result"], r.text
    r = code_run(server, sb, "cobol", "DISPLAY 'HI'.")
    assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST", r.text


@pytest.mark.files
def test_git_reset_restore_remotes_config_credentials(sb):
    g = sb.git
    repo = f"/tmp/gitx-{RUN}"
    g.init(repo, initial_branch="main")
    g.configure_user("Local Tester", "local@example.com", scope="local", path=repo)
    assert g.get_config("user.email", scope="local", path=repo) == "local@example.com"
    sb.fs.upload_file(b"one\n", f"{repo}/a.txt")
    g.add(repo, ["a.txt"])
    g.commit(repo, "one", "Local Tester", "local@example.com")
    sb.fs.upload_file(b"two\n", f"{repo}/a.txt")
    g.add(repo, ["a.txt"])
    g.commit(repo, "two", "Local Tester", "local@example.com")

    # reset: unstage, then move the branch back.
    sb.fs.upload_file(b"three\n", f"{repo}/a.txt")
    g.add(repo, ["a.txt"])
    assert str(getattr(g.status(repo).file_status[0].staging, "value", "")) == "Modified"
    g.reset(repo)
    st = g.status(repo).file_status[0]
    assert (str(st.staging.value), str(st.worktree.value)) == ("Unmodified", "Modified")
    # restore: discard the worktree change, then bring back an older version.
    g.restore(repo, ["a.txt"])
    assert sb.fs.download_file(f"{repo}/a.txt") == b"two\n"
    g.restore(repo, ["a.txt"], source="HEAD~1", staged=True, worktree=True)
    assert sb.fs.download_file(f"{repo}/a.txt") == b"one\n"
    g.reset(repo, mode="hard")
    assert sb.fs.download_file(f"{repo}/a.txt") == b"two\n"
    g.reset(repo, mode="hard", target="HEAD~1")
    assert sb.fs.download_file(f"{repo}/a.txt") == b"one\n"
    with pytest.raises(DaytonaValidationError):
        g.reset(repo, mode="sideways")
    with pytest.raises(DaytonaNotFoundError):
        g.restore(repo, [f"missing-{RUN}.txt"])
    with pytest.raises(DaytonaNotFoundError):
        g.reset(f"/tmp/not-a-repo-{RUN}")

    # remotes: add (with fetch), list, get, conflict, overwrite.
    bare = f"/tmp/gitx-bare-{RUN}.git"
    assert sh(sb, f"git clone -q --bare {repo} {bare}")[0] == 0
    assert g.remotes(repo).remotes == []
    g.remote_add(repo, "origin", bare, fetch=True)
    assert "origin/main" in sh(sb, f"git -C {repo} branch -r")[1]
    assert [(r.name, r.url) for r in g.remotes(repo).remotes] == [("origin", bare)]
    assert g.remote_get(repo, "origin") == bare
    assert g.remote_get(repo, "nope") is None
    with pytest.raises(DaytonaConflictError):
        g.remote_add(repo, "origin", "https://example.com/other.git")
    g.remote_add(repo, "origin", "https://example.com/other.git", overwrite=True)
    assert g.remote_get(repo, "origin") == "https://example.com/other.git"

    # config: global by default (the sandbox user's ~/.gitconfig).
    assert g.get_config(f"sandbar.k{RUN}") is None
    g.set_config(f"sandbar.k{RUN}", "v 1")
    assert g.get_config(f"sandbar.k{RUN}") == "v 1"
    assert f"k{RUN} = v 1" in sh(sb, "cat ~/.gitconfig")[1]
    g.configure_user("Global Tester", "global@example.com")
    assert (g.get_config("user.name"), g.get_config("user.email")) == ("Global Tester", "global@example.com")
    with pytest.raises(DaytonaValidationError):
        g.set_config("a.b", "c", scope="local")  # local needs a path

    # dangerously_authenticate: git's store helper hands the credentials out again.
    g.dangerously_authenticate("bot", f"tok-{RUN}", host="git.example.com")
    assert g.get_config("credential.helper") == "store"
    code, out = sh(sb, "printf 'protocol=https\\nhost=git.example.com\\n\\n' | git credential fill")
    assert code == 0 and f"password=tok-{RUN}" in out and "username=bot" in out, out
    with pytest.raises(DaytonaError):
        g.dangerously_authenticate("bot", "multi\nline")
