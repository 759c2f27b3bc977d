"""Command groups added to the ``mailfleet`` CLI by the mailing and bounce modules."""
