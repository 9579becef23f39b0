"""Secret masking: printed forms of values, literal search engines, shape patterns."""
