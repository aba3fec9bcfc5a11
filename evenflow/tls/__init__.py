"""TLS without terminating it: reading what a ClientHello offers so a listener can route on it."""
