"""`python -m framework serve-reward`: any reward source over HTTP. protocol.py is the JSON
protocol (the http reward source speaks it too), batcher.py groups concurrent requests into
one scoring call, app.py is the FastAPI application, command.py the command line."""
