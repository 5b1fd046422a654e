"""Operations views over the results database."""
