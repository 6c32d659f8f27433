from steward.cli import app

app(prog_name="steward")
