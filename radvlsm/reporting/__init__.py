"""Reporting: measured findings and structured reports."""
