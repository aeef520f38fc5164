"""The race report (``python -m race report``): :mod:`.model` is what it shows,
:mod:`.data` reads it from the database, :mod:`.charts` and :mod:`.render` draw it."""
