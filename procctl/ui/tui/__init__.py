"""The interactive view (Textual): imported only when it is used, so that
`status --json` and plain output never pay for the library."""
