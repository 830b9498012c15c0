"""The sidebar's collection controls: create, rename, delete; errors wait in the session for
the sidebar to show them, because these run as button callbacks before the page is drawn."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from imgfinder.errors import ImgFinderError
from imgfinder.service import Service
from imgfinder.ui.results import forget_like
from imgfinder.ui.words import t


def manage_collection(service: Service, collection: str) -> None:
    name = Path(collection).name
    with st.expander(t("Rename or delete {name}", name=name)):
        st.text_input(t("New name"), key="renamed_collection", placeholder=name)
        st.button(t("Rename"), on_click=rename_collection, args=(service, collection))
        sure = st.checkbox(
            t("Delete {name} and its index (the photos and videos stay)", name=name),
            key=f"sure-delete::{collection}",
        )
        st.button(
            t("Delete"),
            on_click=delete_collection,
            args=(service, collection),
            disabled=not sure,
            type="primary",
            icon=":material/delete:",
        )


def rename_collection(service: Service, collection: str) -> None:
    try:
        path = service.rename_collection(collection, st.session_state.renamed_collection.strip())
    except ImgFinderError as exc:
        st.session_state.sidebar_error = str(exc)
    else:
        st.session_state.collection = str(path)
        st.session_state.renamed_collection = ""


def delete_collection(service: Service, collection: str) -> None:
    try:
        service.delete_collection(collection)
    except ImgFinderError as exc:
        st.session_state.sidebar_error = str(exc)
    else:
        forget_like()
        st.session_state.pop("collection", None)


def create_collection(service: Service) -> None:
    try:
        path = service.create_collection(st.session_state.new_collection.strip())
    except ImgFinderError as exc:
        st.session_state.sidebar_error = str(exc)
    else:
        st.session_state.collection = str(path)
        st.session_state.new_collection = ""
