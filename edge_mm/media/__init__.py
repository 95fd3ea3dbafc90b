"""Media decoding and preprocessing shared by the runtime tasks."""
