"""Packaging (issue 11): generated man pages and completions, a complete sdist whose own tests
run, an installable wheel that puts everything in the usual places, README links that work on a
package index, and the systemd unit checked offline by ``systemd-analyze``.

These build real artefacts with the real tools (``python -m build``, pip, venv, man, bash,
systemd-analyze); a tool that is absent is a skip naming it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _cli_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_docs", ROOT / "tools" / "cli_docs.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-docs")
    _cli_docs().generate(out)
    return out


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from exithand.cli import build_parser

    top = build_parser()
    subs = _cli_docs().subcommands(top)
    return {"exithand": top, **{f"exithand-{n}": p for n, (p, _h) in subs.items()}}


@pytest.mark.timeout(60)
def test_man_pages_list_every_option(generated: Path) -> None:
    parsers = _parsers()
    assert len(parsers) >= 7  # exithand + wait kill mount umount info watch
    have_man = shutil.which("man") is not None
    for page, parser in parsers.items():
        path = generated / "man" / f"{page}.1"
        roff = path.read_text()
        assert roff.startswith(f'.TH "{page.upper()}" "1"'), page
        rendered = ""
        if have_man:
            rendered = subprocess.run(["man", "-l", str(path)], capture_output=True, text=True,
                                      timeout=30, env={**os.environ, "MANWIDTH": "200"}).stdout
        for action in parser._actions:
            for opt in action.option_strings:
                assert opt.replace("-", "\\-") in roff, f"{page}: {opt} missing"
                if have_man:
                    assert opt in rendered.replace("\u2010", "-"), f"{page}: {opt} not shown"
    top = (generated / "man" / "exithand.1").read_text()
    for page in parsers:
        if page != "exithand":
            escaped = page.replace("-", "\\-")
            assert f"\\fB{escaped}\\fR(1)" in top, page


def _bash_complete(script: Path, *words: str) -> list[str]:
    line = " ".join(f"'{w}'" for w in words)
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c",
         f'source "{script}"; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; '
         '_exithand; printf "%s\\n" "${COMPREPLY[@]}"'],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.timeout(60)
def test_bash_completion_offers_commands_options_and_choices(generated: Path) -> None:
    script = generated / "bash" / "exithand"
    assert set(_bash_complete(script, "exithand", "w")) == {"wait", "waitpid", "watch"}
    assert _bash_complete(script, "exithand", "wait", "--ti") == ["--timeout"]
    assert _bash_complete(script, "exithand", "mount", "--policy", "pa") == ["parent"]
    assert str(os.getpid()) in _bash_complete(script, "exithand", "wait", str(os.getpid()))
    # every option of every command is offered after its command
    for page, parser in _parsers().items():
        if page == "exithand":
            continue
        offered = set(_bash_complete(script, "exithand", page.split("-", 1)[1], "-"))
        wanted = {o for a in parser._actions for o in a.option_strings}
        assert wanted <= offered, (page, wanted - offered)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shell,rel", [("zsh", "zsh/_exithand"), ("fish", "fish/exithand.fish")])
def test_zsh_and_fish_completions_parse(generated: Path, shell: str, rel: str) -> None:
    text = (generated / rel).read_text()
    for page, parser in _parsers().items():
        for a in parser._actions:
            for opt in a.option_strings:
                needle = opt if shell == "zsh" else (f"-l {opt[2:]}" if opt.startswith("--")
                                                      else f"-s {opt[1:]}")
                assert needle in text, (shell, page, opt)
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed: contents checked, syntax not")
    res = subprocess.run([exe, "-n", str(generated / rel)], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    if shell == "fish":  # fish completes without a terminal: ask it
        res = subprocess.run([exe, "--no-config", "-c",
                              f"source {generated / rel}; complete -C 'exithand wait --ti'; "
                              "complete -C 'exithand mount --policy '"],
                             capture_output=True, text=True, timeout=30)
        words = [ln.split("\t")[0] for ln in res.stdout.splitlines()]
        assert "--timeout" in words and {"same-user", "public", "parent", "root"} <= set(words)


def test_readme_links_work_on_a_package_index() -> None:
    """PyPI shows README.md alone: a relative link (docs/x.md) is a dead link there."""
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links, "no links found: the pattern is wrong"
    bad = [u for u in links if not u.startswith(("https://", "http://", "#"))]
    assert not bad, f"relative links in README.md: {bad}"


def test_metadata() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert all(u.startswith("https://") for u in meta["urls"].values())
    versions = {c.rsplit(":: ", 1)[1] for c in meta["classifiers"]
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    assert versions == {"3.9", "3.10", "3.11", "3.12", "3.13"}
    assert meta["requires-python"] == ">=3.9"


# ----- sdist and wheel ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build", reason="python -m build (the 'build' package, in [test])")
    out = tmp_path_factory.mktemp("dist")
    res = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out),
                          str(ROOT)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (tgz,) = out.glob("exithand-*.tar.gz")
    return tgz


@pytest.mark.timeout(900)
def test_sdist_ships_a_runnable_test_tree(sdist: Path, tmp_path: Path) -> None:
    with tarfile.open(sdist) as tf:
        names = tf.getnames()
        top = names[0].split("/")[0]
        tf.extractall(tmp_path)  # our own archive
    tree = tmp_path / top
    for rel in ("tests/conftest.py", "tests/helpers/eh5_burst.c", "tests/fshelp.py",
                "docs/waitset.md", "examples/demo.py", "contrib/exithand-fs.service",
                "tools/cli_docs.py", "setup.py", "LICENSE", "CHANGELOG.md", "scripts/test.sh"):
        assert (tree / rel).is_file(), f"sdist lacks {rel}"
    assert not list(tree.rglob("__pycache__"))
    # the shipped tests run against the shipped sources (conftest puts ./src first)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_smoke.py", "tests/test_api.py", "-k",
                          "not typed_usage and not kill_path"],
                         cwd=tree, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r"\d+ passed", res.stdout), res.stdout


@pytest.mark.timeout(900)
def test_wheel_from_sdist_installs_command_man_pages_and_completions(sdist: Path,
                                                                    tmp_path: Path) -> None:
    # without PYTHONPATH: a src/*.egg-info left by a build would look like an installed copy
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                          str(tmp_path / "wheels"), str(sdist)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    (whl,) = (tmp_path / "wheels").glob("exithand-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                          "install", "-q", "--no-deps", "--no-index", str(whl)],
                         capture_output=True, text=True, timeout=300, env=env)
    if res.returncode != 0 and "no such option: --python" in res.stderr:
        pytest.skip("pip < 22.3 cannot install into another interpreter")
    assert res.returncode == 0, res.stderr[-3000:]
    out = subprocess.run([str(venv / "bin" / "exithand"), "--version"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout.startswith("exithand "), out
    share = venv / "share"
    for page in _parsers():
        assert (share / "man" / "man1" / f"{page}.1").is_file(), page
    assert (share / "bash-completion" / "completions" / "exithand").is_file()
    assert (share / "zsh" / "site-functions" / "_exithand").is_file()
    assert (share / "fish" / "vendor_completions.d" / "exithand.fish").is_file()
    if shutil.which("man"):
        where = subprocess.run(["man", "-w", "exithand-wait"], capture_output=True, text=True,
                               timeout=30, env={**env, "MANPATH": str(share / "man")})
        assert where.stdout.strip() == str(share / "man" / "man1" / "exithand-wait.1"), where


# ----- the systemd unit, offline ---------------------------------------------------------------

_UNIT = ROOT / "contrib" / "exithand-fs.service"
# options that give the service a private mount namespace, hiding its FUSE mount from the host
_MOUNT_NS_OPTIONS = ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                     "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                     "ProtectControlGroups", "ProtectProc", "ProcSubset", "ReadOnlyPaths",
                     "ReadWritePaths", "InaccessiblePaths", "TemporaryFileSystem", "BindPaths",
                     "BindReadOnlyPaths", "PrivateMounts", "MountFlags", "RootDirectory",
                     "RootImage", "PrivateNetwork", "PrivateUsers", "PrivateIPC")


def _analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (Debian: apt-get install systemd)")
    return exe


def _unit_root(tmp_path: Path, exithand_at: str, generated: Path) -> tuple[Path, dict[str, str]]:
    """A root directory with the unit, systemd's own units and a stand-in exithand binary."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(_UNIT, root / "etc/systemd/system")
    for d in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(d).is_dir():
            shutil.copytree(d, root / d.lstrip("/"), symlinks=True, dirs_exist_ok=True)
            break
    exe = root / exithand_at.lstrip("/")
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    man1 = tmp_path / "man" / "man1"
    man1.mkdir(parents=True)
    for page in (generated / "man").glob("*.1"):
        shutil.copy(page, man1)
    return root, {**os.environ, "MANPATH": str(tmp_path / "man")}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["/usr/local/bin/exithand", "/usr/bin/exithand"])
def test_unit_verifies_wherever_exithand_is_on_systemds_path(tmp_path: Path, generated: Path,
                                                              where: str) -> None:
    exe = _analyze()
    root, env = _unit_root(tmp_path, where, generated)
    res = subprocess.run([exe, "verify", f"--root={root}", "exithand-fs.service"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    # the control: with no exithand on that path, verify does fail
    (root / where.lstrip("/")).unlink()
    res = subprocess.run([exe, "verify", f"--root={root}", "exithand-fs.service"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode != 0 and "exithand" in res.stdout + res.stderr


@pytest.mark.timeout(120)
def test_unit_is_hardened_without_a_private_mount_namespace() -> None:
    exe = _analyze()
    keys = {ln.split("=", 1)[0].strip() for ln in _UNIT.read_text().splitlines()
            if "=" in ln and not ln.lstrip().startswith("#")}
    assert not keys & set(_MOUNT_NS_OPTIONS), keys & set(_MOUNT_NS_OPTIONS)
    res = subprocess.run([exe, "security", "--offline=true", "--no-pager", str(_UNIT)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for exithand-fs\.service: (\d+\.\d+)",
                  res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= 5.0, res.stdout  # was 9.6 UNSAFE


def _unit_capabilities() -> list[str]:
    for ln in _UNIT.read_text().splitlines():
        if ln.startswith("CapabilityBoundingSet="):
            return [c.lower().removeprefix("cap_") for c in ln.split("=", 1)[1].split()]
    raise AssertionError("no CapabilityBoundingSet= in the unit")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("control", [False, True], ids=["unit-caps", "control-fewer-caps"])
def test_daemon_works_within_the_units_capability_bounding_set(control: bool) -> None:
    """The unit's CapabilityBoundingSet= and NoNewPrivileges=, applied with setpriv(1) (no
    systemd needed), still let the daemon mount, see another user's zombie's status (needs
    CAP_SYS_PTRACE) and answer a reader.  The seccomp and address-family filters cannot be
    applied without systemd and are not checked here.  The control drops CAP_SYS_PTRACE and
    CAP_NET_ADMIN and must then fail to tell the status: the check can fail."""
    import fshelp

    from conftest import NOBODY

    if fshelp._problem is not None:
        pytest.skip(fshelp._problem)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) not installed")
    caps = _unit_capabilities()
    if control:
        caps = [c for c in caps if c not in ("sys_ptrace", "net_admin")]
    bounding = "-all," + ",".join(f"+{c}" for c in caps)
    prefix = (setpriv, f"--bounding-set={bounding}", "--inh-caps=-all", "--no-new-privs")
    d = fshelp.start_daemon(prefix=prefix)
    try:
        with open(f"/proc/{d.proc.pid}/status") as f:
            status = dict(ln.split(":\t", 1) for ln in f.read().splitlines() if ":\t" in ln)
        assert status["NoNewPrivs"].strip() == "1"
        bnd = int(status["CapBnd"], 16)
        want = 0
        for c in caps:
            want |= 1 << {"sys_admin": 21, "sys_ptrace": 19, "dac_read_search": 2,
                          "dac_override": 1, "net_admin": 12, "setuid": 7, "setgid": 6}[c]
        assert bnd == want, f"{bnd:#x} != {want:#x}"
        # another user's process (a zombie until we reap it: its exit code is field 52 of
        # /proc/PID/stat, which the daemon may read only with CAP_SYS_PTRACE)
        v = subprocess.Popen([setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}",
                              "--clear-groups", "sh", "-c", "read x; exit 7"],
                             stdin=subprocess.PIPE)
        try:
            try:
                f = open(d.path(v.pid, "exitstatus"))  # noqa: SIM115
            except FileNotFoundError:
                # without CAP_SYS_PTRACE the daemon cannot read this (fully privileged) reader's
                # /proc/PID/ns/pid (ptrace access needs a superset of the target's capabilities),
                # so it cannot tell which numbers the reader sees and shows it none: closed
                assert control, "the unit's capabilities must let the daemon see the reader"
                return
            with f:
                assert v.stdin is not None
                v.stdin.close()
                got = f.read()
            if control:
                assert got.startswith(f"{v.pid}: exited (status unknown"), got
            else:
                assert got == f"{v.pid}: exited with status 7.\n"
        finally:
            v.kill()
            v.wait(timeout=10)
    finally:
        d.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("control", [False, True], ids=["unit-caps", "control-no-setuid"])
def test_units_capability_bounding_set_answers_a_users_own_process(control: bool) -> None:
    """Under the unit's CapabilityBoundingSet= a user reads its own job's exit status (the
    same-user verdict is asked of the kernel as that user: setresuid/setresgid need
    CAP_SETUID/CAP_SETGID).  The control drops those two and must be refused: it can fail."""
    import fshelp

    from conftest import NOBODY

    if fshelp._problem is not None:
        pytest.skip(fshelp._problem)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) not installed")
    caps = _unit_capabilities()
    assert {"setuid", "setgid"} <= set(caps)
    if control:
        caps = [c for c in caps if c not in ("setuid", "setgid")]
    bounding = "-all," + ",".join(f"+{c}" for c in caps)
    d = fshelp.start_daemon(prefix=(setpriv, f"--bounding-set={bounding}", "--inh-caps=-all",
                                    "--no-new-privs"))
    try:
        user = (setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
        # the user's own process, a zombie until the reader is answered (after the reap the
        # same-user verdict is issue 22.1's, not this test's)
        v = subprocess.Popen([*user, "sh", "-c", "read x; exit 7"], stdin=subprocess.PIPE)
        try:
            cat = subprocess.Popen([*user, "cat", d.path(v.pid, "exitstatus")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                if not control:
                    d.wait_blocked(v.pid)
                assert v.stdin is not None
                v.stdin.close()
                out, err = cat.communicate(timeout=30)
            finally:
                cat.kill()
                cat.wait(timeout=10)
            if control:
                assert cat.returncode != 0 and "ermission denied" in err, (out, err)
            else:
                assert cat.returncode == 0 and out == f"{v.pid}: exited with status 7.\n", err
        finally:
            v.kill()
            v.wait(timeout=10)
    finally:
        d.stop()
