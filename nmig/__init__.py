"""nmig: move experiment-tracking history from Neptune Legacy (2.x) to Neptune 3.x through a bundle."""

__version__ = "0.1.0"
