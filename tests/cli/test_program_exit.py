"""The installed commands end the process right after the command returns (os._exit, no interpreter teardown):
exit codes, output and written files must come through exactly as with a normal exit."""

import subprocess
import sys
import textwrap


def run_program(body: str, tmp_path) -> subprocess.CompletedProcess:
    command = textwrap.indent(textwrap.dedent(body).strip(), "    ")
    script = tmp_path / "program.py"
    script.write_text("import typer\nfrom auditor.cli import run_as_program\n\n"
                      "app = typer.Typer(add_completion=False)\n\n\n"
                      f"@app.command()\ndef main() -> None:\n{command}\n\n\n"
                      "run_as_program(app)\nprint('not reached')\n")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)


def test_exit_code_output_and_files_come_through(tmp_path):
    target = tmp_path / "report.txt"
    done = run_program(f"""
        import atexit, sys
        atexit.register(lambda: print("teardown"))  # the interpreter's teardown is skipped
        print("to stdout", end="")  # unflushed, no newline: must still arrive
        sys.stderr.write("to stderr")
        open({str(target)!r}, "w").write("written")
        raise typer.Exit(3)
    """, tmp_path)
    assert done.returncode == 3
    assert done.stdout == "to stdout" and "to stderr" in done.stderr
    assert target.read_text() == "written" and "not reached" not in done.stdout


def test_a_clean_return_is_exit_zero_and_a_message_exit_is_one_with_the_message(tmp_path):
    assert run_program("print('ok')", tmp_path).returncode == 0
    done = run_program("raise SystemExit('bad setting: tip')", tmp_path)
    assert done.returncode == 1 and "bad setting: tip" in done.stderr


def test_the_audit_command_keeps_its_usage_exit_code():
    done = subprocess.run([sys.executable, "-m", "auditor", "audit", "/nonexistent/dataset"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_usage_errors_are_one_line_and_a_tip_with_exit_2():
    for argv, said in ((["audit", "/tmp", "--bogus"], "No such option: --bogus"),
                       (["audit", "--min-cosine", "abc", "/tmp"], "Invalid value for '--min-cosine'"),
                       (["audit"], "Missing argument"),
                       (["splitx"], "No such command 'splitx'")):
        done = subprocess.run([sys.executable, "-m", "auditor", *argv], capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (argv, done.stderr)
        assert lines[0].startswith("error: ") and said in lines[0], (argv, done.stderr)
        assert len(lines) == 2 and lines[1].startswith("Tip: run '") and "--help" in lines[1], (argv, done.stderr)


def test_help_and_the_bare_command_still_print_the_help():
    shown = subprocess.run([sys.executable, "-m", "auditor", "audit", "--help"], capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0 and "dataset_dir" in shown.stdout.lower()
    bare = subprocess.run([sys.executable, "-m", "auditor"], capture_output=True, text=True, timeout=120)
    assert bare.returncode == 2 and "audit" in bare.stdout and "error" not in bare.stderr
