"""The README's RAG chain, run as written, and the same chain checked step by step."""

from __future__ import annotations

import re
from pathlib import Path

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough

from langchain_m2v import M2VVectorStore

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_rag_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## A RAG chain", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: no python block under '## A RAG chain'"
    return match.group(1)


class PromptRecorder(BaseCallbackHandler):
    """Keeps the messages each chat model call receives."""

    def __init__(self) -> None:
        self.prompts: list[list] = []

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.prompts.extend(messages)


def test_readme_example_runs_as_written(capsys):
    namespace: dict = {}
    exec(compile(readme_rag_block(), str(README), "exec"), namespace)
    assert capsys.readouterr().out.strip() == "The Seine flows through Paris."
    retrieved = namespace["retriever"].invoke("Which river flows through Paris?")
    assert len(retrieved) == 2 and retrieved[0].metadata["source"] == "geography"
    assert isinstance(namespace["store"], M2VVectorStore)


def rag_chain(store, answers):
    retriever = store.as_retriever(search_kwargs={"k": 2})

    def format_docs(docs):
        return "\n\n".join(f"[{doc.id}] {doc.page_content}" for doc in docs)

    prompt = ChatPromptTemplate.from_messages([
        ("system", "Answer the question using only this context:\n\n{context}"),
        ("human", "{question}"),
    ])
    llm = FakeListChatModel(responses=answers)
    return {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()


def test_chain_puts_the_retrieved_documents_in_the_prompt(store, corpus):
    recorder = PromptRecorder()
    chain = rag_chain(store, ["answer one", "answer two"])
    questions = ["Why does bread dough rise with yeast?", "who invented the printing press"]
    answers = [chain.invoke(q, config={"callbacks": [recorder]}) for q in questions]
    assert answers == ["answer one", "answer two"]
    assert len(recorder.prompts) == 2
    for question, messages in zip(questions, recorder.prompts):
        system, human = messages
        expected = corpus.queries[question]
        assert human.content == question
        context = system.content.split("context:\n\n", 1)[1]
        first = context.split("\n\n")[0]
        assert first == f"[{corpus.ids[expected]}] {corpus.texts[expected]}"
        assert context.count("[doc-") == 2


async def test_chain_async_and_batch(store, corpus):
    chain = rag_chain(store, ["a", "b", "c"])
    assert await chain.ainvoke("what makes volcanoes erupt magma") == "a"
    assert chain.batch(["how do vaccines train the immune system", "binary search on a sorted array"]) \
        in (["b", "c"], ["c", "b"])


def test_chain_with_a_filtered_threshold_retriever(store):
    # a retriever limited to one topic and to relevant documents: nothing relevant -> empty context
    retriever = store.as_retriever(search_type="similarity_score_threshold",
                                   search_kwargs={"k": 3, "score_threshold": 0.999, "filter": {"topic": "music"}})
    assert retriever.invoke("Which river flows through Paris?") == []
    retriever = store.as_retriever(search_kwargs={"k": 3, "filter": {"topic": "music"}})
    assert [d.id for d in retriever.invoke("violin strings tuned in fifths, played with a bow")] == ["doc-5"]
