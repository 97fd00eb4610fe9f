"""retrieve: the most similar reference images of new images, by the served embedder.

``kedro run --pipelines=retrieve --params "retrieve.query=FOLDER,retrieve.reference=FOLDER"``
indexes the reference folder (class folders label it) and writes each query's top-k
neighbours with distances and, with labels, a k-NN label. The index is kept in
``data/06_models/embedding_index``: without ``retrieve.reference`` the saved one is searched
(when the served embedder made it). Unreadable files
are listed in ``retrieval_failures``, never fatal.
"""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import index_references, search_references


def create_pipeline(**kwargs: object) -> Pipeline:
    """The retrieve pipeline."""
    return pipeline([
        node(index_references,
             inputs=["served_embedder", "embedding_index_state", "params:retrieve"],
             outputs=["embedding_index", "reference_failures"], name="index_references"),
        node(search_references,
             inputs=["served_embedder", "embedding_index", "reference_failures",
                     "params:retrieve"],
             outputs=["retrieval_neighbours", "retrieval_labels", "retrieval_failures"],
             name="search_references"),
    ])
