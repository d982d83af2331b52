"""Errors of the data layer; each message says what was wrong and how to fix it."""


class DatasetError(ValueError):
  """A dataset is missing, empty or malformed. The message says how to fix it."""


class ObservationError(DatasetError):
  """Observations lack the keys or shapes that a dataset, config or environment expects."""
