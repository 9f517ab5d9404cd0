"""SQL alerts: rules over the lake's tables, evaluated on a schedule, with states and notifications."""
