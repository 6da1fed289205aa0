"""HTTP layer: one blueprint per resource, plus what every answer shares."""
