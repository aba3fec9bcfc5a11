"""HTTP/1.1 on both sides: client connections, backend connections, and the exchange between."""
