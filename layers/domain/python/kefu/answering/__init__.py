"""The bot: from a customer's words to a calibrated decision (answer, review or hand off).

text.py turns text into features, model.py trains and applies the workspace's classifier and
its calibration, signals.py finds requests for a person, anger and slots, answerer.py puts them
together with the search index. Everything here is pure except answerer.py's ports.
"""
