"""The Streamlit page (display only; calls rag and ingest)."""
