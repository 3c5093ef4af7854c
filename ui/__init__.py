"""Streamlit-only glue shared by the pages: cached resources, state keys, widgets, figure builders."""
