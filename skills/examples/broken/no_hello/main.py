"""Broken echo: starts, never connects, never says hello; hangs until killed."""

import time

if __name__ == "__main__":
    while True:
        time.sleep(1)
