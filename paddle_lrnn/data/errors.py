"""The one exception the data layer raises for bad input."""


class DataError(ValueError):
    """Bad input to the data layer: a missing or empty file, text that is not UTF-8, a vocabulary that does not fit
    the data, a split too small for the context, a batch that does not divide over the ranks, a corrupt vocabulary
    file. The message names the file, the position (byte offset, or line and column) and the sizes involved."""
