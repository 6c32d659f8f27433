from steward.cli import run

run()
