"""The company's content, as files in the repository: message templates (``messages/*.yaml``) and workflows
(``workflows/*.yaml``), both loaded by ``files.load_directory``.

Kept inside ``shared`` so the SharedLayer ships it with the code that reads it; edited by the company like code
(reviewed, versioned, deployed).
"""
