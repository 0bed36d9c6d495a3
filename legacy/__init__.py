"""The four study servers: socketserver, a thread per connection, select, and selectors.

Each module teaches one concurrency model; all call the same protocol core and routes as
`python -m app`. Run one with `python -m legacy.select_server --port 0`.
"""
