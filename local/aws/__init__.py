"""The local AWS: the real template deployed with `sam deploy` to MiniStack on loopback, with the
Glider emulator as its API (`make up`, `make down`, the deployed-stack test)."""
