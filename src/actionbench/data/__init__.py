"""Video data pipeline: annotations -> sampling -> decoding -> transforms -> clips."""
