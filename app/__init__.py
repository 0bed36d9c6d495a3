"""calcserve: a web calculator served five ways over one sans-IO HTTP/1.1 core."""
